"""Device choice and seeding: the one place where a run decides where and how it computes.

Introduced in the helix chapter (``notebooks/helix``) and used by every chapter.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcf.core.errors import LatentcfError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
RUN_OPTIONS_ENV = "LATENTCF_RUN_OPTIONS"
DRY_RUN_STEPS = 2
"""Training steps of every training stage in a dry run (:attr:`RunOptions.dry_run`)."""
HEAP_MMAP_THRESHOLD = 32 * 2**20
"""Host blocks below this size (glibc's largest allowed value, 32 MiB) come from the heap, not from ``mmap``."""
HEAP_TRIM_THRESHOLD = 256 * 2**20
"""Freed heap memory up to this size stays with the process instead of going back to the system."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""The ``mallopt`` parameter numbers of glibc's ``malloc.h``."""


@dataclass(frozen=True)
class RunOptions:
    """How ``python -m latentcf reproduce`` asks a chapter's kernel to run, beyond scale, seed and device.

    ``dry_run``: the paper scale's architectures, code paths and data formats with every training
    stage cut to :data:`DRY_RUN_STEPS` steps, the chapter's ``DRY_RUN`` sizes (a few dozen items)
    and its own model cache; no number of a dry run is compared with a paper.
    ``allow_missing_weights``: a paper-scale run goes on without published weights (ImageNet VGG16,
    LPIPS) instead of refusing; the results file records it.
    ``fabricated_data``: in a dry run, the folder of stand-ins for data files this machine lacks
    (:mod:`latentcf.data.fabricate`); empty otherwise.
    """

    dry_run: bool = False
    allow_missing_weights: bool = False
    fabricated_data: str = ""

    def environment(self) -> dict[str, str]:
        """The environment variable that hands these options to a notebook's kernel."""
        return {RUN_OPTIONS_ENV: json.dumps(asdict(self), sort_keys=True)}


def run_options() -> RunOptions:
    """The options of this process (from ``$LATENTCF_RUN_OPTIONS``; defaults in a plain notebook).

    A malformed value raises :class:`LatentcfError`, never a silent default.
    """
    text = os.environ.get(RUN_OPTIONS_ENV, "")
    if not text:
        return RunOptions()
    try:
        return RunOptions(**json.loads(text))
    except (json.JSONDecodeError, TypeError) as err:
        raise LatentcfError(f"${RUN_OPTIONS_ENV} is not a valid set of run options: {text!r} ({err})") from err


def resolve_device(device: str = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a ``torch.device``.

    ``"auto"`` picks CUDA, then MPS, then the CPU. An explicit request for an accelerator that
    this machine does not have raises :class:`LatentcfError`; it never falls back silently.
    """
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES[1:]:
        raise LatentcfError(f"unknown device '{device}'; choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise LatentcfError(f"device '{device}' requested but CUDA is not available on this machine")
    if kind == "cuda" and ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise LatentcfError(f"device '{device}' requested but this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise LatentcfError(f"device '{device}' requested but MPS is not available on this machine")
    return torch.device(name)


def configure_device(device: torch.device) -> None:
    """Let CUDA pick its fastest kernels (TF32 matrix products and convolutions, cuDNN autotuning); reuse host memory.

    TF32 keeps float32's range with a 10-bit mantissa inside CUDA matrix products (Ampere and
    newer); mixed precision is a separate, per-stage choice (``*_precision`` settings, see
    :func:`latentcf.core.training.fit`). On every device the host allocator keeps freed memory
    (:func:`reuse_host_memory`). Nothing here changes a number on the CPU, so smoke numbers do not move.
    """
    reuse_host_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def reuse_host_memory() -> bool:
    """Make glibc's ``malloc`` keep and reuse freed blocks of up to 32 MiB; ``False`` where there is no glibc.

    By default glibc serves blocks from about 128 KiB with ``mmap`` and gives them back when they are
    freed, so each new activation or gradient of a training step is mapped afresh and its pages
    fault in again: a paper-scale helix flow step (``notebooks/helix``, 1 MB activations and gradients)
    took about 8,300 page faults by default and 120 with this policy, and 43 ms instead of 45-48 ms on
    a 2-core CPU (``tests/test_runtime.py`` checks the faults). With blocks below
    :data:`HEAP_MMAP_THRESHOLD` on the heap, and up to :data:`HEAP_TRIM_THRESHOLD` of freed heap kept,
    the same blocks are reused. Where allocation lives changes no value that a computation returns.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD))


ISA_CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "NPY_DISABLE_CPU_FEATURES")
"""The environment variables that cap the instruction set of ATen's kernels, oneDNN, MKL and NumPy: each library
picks its kernels by the CPU it finds, so one seed gives other numbers on another CPU unless they are capped."""
RECORDED_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
"""The CPU flags whose presence changes which kernels run (``/proc/cpuinfo``), recorded with every run."""


def cpu_description() -> dict[str, Any]:
    """The CPU a run computed on, as a results file records it.

    ``model`` and ``flags`` (those of :data:`RECORDED_CPU_FLAGS` the CPU has) come from ``/proc/cpuinfo``
    where it exists; ``aten_capability`` is the instruction set ATen's kernels use (``"AVX2"``,
    ``"AVX512"``, ``"DEFAULT"``), ``threads`` torch's intra-op threads, ``caps`` the set variables of
    :data:`ISA_CAP_VARIABLES`.
    """
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"model": model, "flags": [flag for flag in RECORDED_CPU_FLAGS if flag in flags],
            "aten_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "caps": {name: os.environ[name] for name in ISA_CAP_VARIABLES if name in os.environ}}


def device_description(device: torch.device) -> str:
    """A human-readable name of the device, e.g. ``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cpu (2 cores)"``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores)"
    return device.type


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named random stream ``stream`` of the run seeded with ``seed``.

    Every use of randomness in a chapter draws from its own named stream (``"wae/augment"``,
    ``"classifier/init"``, ``"targets/run2"``), so adding or reordering one stream never shifts
    another, and no two streams collide as hand-picked offsets (``seed + 1``) do across seeds.
    """
    digest = hashlib.sha256(f"{int(seed)}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` for the named stream ``stream`` (see :func:`stream_seed`)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


def seed_stream(seed: int, stream: str) -> None:
    """Seed torch's global generator from a named stream: for layers that initialise from it."""
    torch.manual_seed(stream_seed(seed, stream))
