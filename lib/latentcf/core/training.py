"""The one training loop of the library: Adam(W) steps on a loss that the caller defines.

Introduced in ``notebooks/helix``; every model of the book is trained through :func:`fit`. It is
also where a run's device policy reaches training: mixed precision (:func:`autocast`), the
channels-last layout of convolutional networks on CUDA, and the step cap of a dry run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import DRY_RUN_STEPS, run_options

PRECISIONS = ("fp32", "bf16")
"""``fp32``: plain float32. ``bf16``: bfloat16 autocast (float32 weights and optimiser; matrix products
and convolutions in bfloat16; no loss scaling needed, bfloat16 has float32's range)."""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A context in which the forward pass runs at ``precision`` (one of :data:`PRECISIONS`) on ``device``."""
    if precision not in PRECISIONS:
        raise LatentcfError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def prefer_channels_last(model: nn.Module) -> nn.Module:
    """Store a convolutional network's weights channels-last on CUDA, where cuDNN is fastest that way.

    Convolutions then run channels-last whatever the layout of their input. On other devices, and
    for networks without 2-d convolutions, the model is returned unchanged.
    """
    first = next(model.parameters(), None)
    has_conv = any(isinstance(module, nn.Conv2d) for module in model.modules())
    if first is not None and first.device.type == "cuda" and has_conv:
        model.to(memory_format=torch.channels_last)
    return model


@dataclass(frozen=True)
class Validation:
    """Keep the best model on held-out data: ``loss()`` is evaluated every ``every`` steps and at the end.

    ``loss()`` returns a scalar loss of the current model on a fixed held-out set; :func:`fit` calls it
    in eval mode under ``torch.no_grad`` and, when training ends, restores the weights with the
    lowest value. This is the rule of the official helix notebook (Dombrowski et al.'s
    ``toy_example.ipynb``: validate every 100 iterations, save the best model), and it makes a run's
    result independent of where a noisy training curve happens to stop.
    """

    loss: Callable[[], torch.Tensor]
    every: int

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"validation every must be >= 1, got {self.every}")


def fit(
    model: nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    desc: str,
    parameters: Iterable[nn.Parameter] | None = None,
    *,
    weight_decay: float = 0.0,
    lr_factor: Callable[[int], float] | None = None,
    clip_norm: float | None = None,
    precision: str = "fp32",
    validation: Validation | None = None,
) -> dict[str, list[float] | float]:
    """Minimise ``loss_fn(step)`` with AdamW for ``steps`` steps, with a progress bar.

    ``loss_fn`` draws or selects its own batch (a fresh sample for the toys, the next
    mini-batch for image data) and returns a scalar loss. With the default ``weight_decay = 0``
    AdamW is Adam. ``lr_factor(step)`` multiplies the learning rate (a schedule, e.g. a decay per
    epoch); ``clip_norm`` clips the total gradient norm before each step; ``precision`` runs
    ``loss_fn`` under :func:`autocast`; ``validation`` keeps the best model on held-out data
    (:class:`Validation`). In a dry run (:class:`latentcf.core.runtime.RunOptions`)
    training stops after :data:`latentcf.core.runtime.DRY_RUN_STEPS` steps. The losses stay on the
    device until the end: no host synchronisation inside the loop. AdamW runs its multi-tensor
    (``foreach``) form on every device: the same numbers as the per-tensor loop that PyTorch picks by
    default on a CPU, in fewer and larger operations.

    Returns:
        ``{"loss": [one value per step], "train_s": seconds}``; with ``validation`` also
        ``"val_loss"`` (one value per validation), ``"val_step"`` (the number of steps done at each)
        and ``"best_step"`` (the steps done by the weights kept).
    """
    if run_options().dry_run:
        steps = min(steps, DRY_RUN_STEPS)
    device = next(model.parameters()).device
    prefer_channels_last(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters() if parameters is None else parameters, lr=lr,
                                  weight_decay=weight_decay, foreach=True)
    schedule = None if lr_factor is None else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses = []
    keeper = None if validation is None else _BestKeeper(model, validation.loss)
    started = time.perf_counter()
    for step in tqdm(range(steps), desc=desc, mininterval=2.0):
        with autocast(device, precision):
            loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_norm)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.detach().float())
        if keeper is not None and ((step + 1) % validation.every == 0 or step + 1 == steps):
            keeper.validate(step + 1)
    model.eval()
    history = {} if keeper is None else keeper.restore_best()
    return {"loss": torch.stack(losses).cpu().tolist(), "train_s": time.perf_counter() - started, **history}


class _BestKeeper:
    """Validation bookkeeping for :func:`fit`: the held-out losses and a copy of the best weights."""

    def __init__(self, model: nn.Module, loss: Callable[[], torch.Tensor]) -> None:
        self.model, self.loss = model, loss
        self.val_loss: list[float] = []
        self.val_step: list[int] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_value = float("inf")
        self.best_step = 0

    def validate(self, steps_done: int) -> None:
        """Evaluate the held-out loss now; copy the weights if it is the lowest so far (NaN never is)."""
        self.model.eval()
        with torch.no_grad():
            value = float(self.loss())
        self.model.train()
        if value < self.best_value:
            self.best_value = value
            self.best_state = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
            self.best_step = steps_done
        self.val_loss.append(value)
        self.val_step.append(steps_done)

    def restore_best(self) -> dict[str, list[float] | list[int] | int]:
        """Load the best weights into the model; returns the validation history."""
        if self.best_state is None:
            raise LatentcfError(f"training diverged: no held-out loss was finite ({self.val_loss})")
        self.model.load_state_dict(self.best_state)
        return {"val_loss": self.val_loss, "val_step": self.val_step, "best_step": self.best_step}


def epoch_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Mini-batch indices for ``epochs`` shuffled passes over ``n`` samples, in training order.

    Shapes: ``-> [(batch_size,) or a shorter last batch per epoch, ...]``, int64 on the CPU.
    Each epoch is a fresh permutation; its last partial batch is kept (as a PyTorch
    ``DataLoader(shuffle=True)`` does). Pass ``len(batches)`` as ``steps`` to :func:`fit` and
    ``batches[step]`` inside ``loss_fn``.
    """
    if n < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"n, batch_size and epochs must be >= 1, got {n}, {batch_size}, {epochs}")
    return [chunk for _ in range(epochs) for chunk in torch.randperm(n, generator=generator).split(batch_size)]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, forward_batch: Callable[[torch.Tensor], object],
                           batches: list[torch.Tensor]) -> None:
    """Set every BatchNorm's running mean and variance to exact averages over ``batches``.

    During training the running statistics are exponential averages over the last few batches of a
    network that was still changing; with a high learning rate they can lag the final weights so far
    that the eval-mode network fails (seen on the 5,000-image MNIST subset: 35% in eval mode, 95% in
    train mode). One pass in train mode with cumulative averaging (``momentum=None``) over the
    training batches, without any weight update, repairs them. ``forward_batch(indices)`` runs the
    model on one batch.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for batch in batches:
        forward_batch(batch)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
