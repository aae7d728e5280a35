"""The smoke margins: every chapter at several seeds, natively and with the instruction set capped.

``python -m latentcf margins CHAPTER... --seeds 0 1 2 3 4 --isa native`` (and again with ``--isa capped``)
runs each chapter at smoke scale in a fresh process per seed, with its own model cache, keeps each
results file under ``build/margins/<isa>/seed<N>/``, and then tabulates every relation's margin over
all the runs found there: :data:`latentcf.core.smoke_evidence.MARGINS_FILE` (read by the check) and
``results/smoke/margins.md`` (read by people). A run already there is not repeated, and the runs of
the shipped table are kept (:func:`merge`), so sweeps on several machines or days add up. The capped
instruction set stands in for another CPU: ATen's kernels without vector extensions, oneDNN and MKL
at AVX, whatever this CPU offers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latentcf.core.claims import RELATIONS, Relation, check_relation
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import build_dir, project_root
from latentcf.core.results import load_results, short_commit
from latentcf.core.smoke_evidence import MARGINS_FILE, relation_key, run_label, smoke_power

ISA_CAPS = {
    "native": {},
    "capped": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX", "MKL_CBWR": "AVX"},
}
"""The instruction sets of a sweep: the CPU's own, and capped below AVX2 (ATen's scalar kernels, oneDNN and MKL
at AVX without FMA), which changes the order and rounding of every vectorised sum as another CPU does."""


def sweep_dir() -> Path:
    """Where a sweep keeps its runs: ``build/margins/<isa>/seed<N>/<chapter>.json``."""
    return build_dir() / "margins"


def run_smoke(chapter: str, seed: int, isa: str, threads: int, folder: Path) -> Path:
    """Run ``chapter`` at smoke scale and ``seed`` in a fresh process under ``ISA_CAPS[isa]`` with ``threads``.

    The process gets its own model cache per instruction set (``folder/../../cache/<isa>``), so no model
    trained under one set is reused under another. Returns the results file; a failed chapter raises.
    """
    if isa not in ISA_CAPS:
        raise LatentcfError(f"unknown instruction set '{isa}'; choose one of {', '.join(ISA_CAPS)}")
    work = folder / "work"
    environment = {**os.environ, **ISA_CAPS[isa], "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "LATENTCF_CACHE": str(folder.parent.parent / "cache" / isa)}
    command = [sys.executable, "-m", "latentcf", "reproduce", chapter, "--scale", "smoke", "--seed", str(seed),
               "--device", "cpu", "--out", str(work)]
    if subprocess.run(command, env=environment, cwd=project_root()).returncode != 0:
        raise LatentcfError(f"the smoke run of '{chapter}' at seed {seed} ({isa}) failed: see {work}/executed")
    target = folder / f"{chapter}.json"
    target.write_text((work / "results" / f"{chapter}.json").read_text())
    return target


def sweep(chapters: list[str], seeds: list[int], isa: str, threads: int) -> None:
    """Run every chapter at every seed under ``isa`` that ``build/margins`` does not hold yet."""
    todo = [(seed, chapter) for seed in seeds for chapter in chapters
            if not (sweep_dir() / isa / f"seed{seed}" / f"{chapter}.json").is_file()]
    for seed, chapter in tqdm(todo, desc=f"smoke runs ({isa})", unit="run"):
        run_smoke(chapter, seed, isa, threads, sweep_dir() / isa / f"seed{seed}")


def _run_record(isa: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One run of the table (one seed under one instruction set): its machine, commit and chapter times."""
    cpu = next((document["cpu"] for document in documents if "cpu" in document), {})
    return {"isa": isa, "seed": documents[0]["seed"], "caps": ISA_CAPS[isa], "cpu": cpu,
            "git_sha": sorted({short_commit(document["git_sha"]) for document in documents}),
            "dates": sorted({document.get("date", "")[:10] for document in documents}),
            "runtime_s": {document["chapter"]: document["runtime_s"] for document in documents}}


def tabulate(folder: Path) -> dict[str, Any]:
    """The margins table of every run under ``folder`` (``<isa>/seed<N>/<chapter>.json``).

    A relation's margin is ``None`` in a run that did not record its chapter or scale's metrics.
    """
    runs, documents = {}, {}
    for seed_folder in sorted(folder.glob("*/seed*")):
        isa = seed_folder.parent.name
        found = [load_results(path) for path in sorted(seed_folder.glob("*.json"))]
        if isa not in ISA_CAPS or not found:
            continue
        label = run_label(isa, found[0]["seed"])
        runs[label] = _run_record(isa, found)
        documents[label] = {document["chapter"]: document for document in found}
    margins = {relation_key(r.chapter, r.text): {label: _margin(r, by_chapter.get(r.chapter))
                                                 for label, by_chapter in documents.items()}
               for r in RELATIONS}
    return {"about": __doc__.splitlines()[0], "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runs": runs, "margins": margins}


def merge(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """``later``'s runs added to ``earlier``'s (a run of both takes ``later``'s margins).

    Margins of relations that are no longer in the registry (:data:`latentcf.core.claims.RELATIONS`) are dropped.
    """
    keys = {relation_key(r.chapter, r.text) for r in RELATIONS}
    margins = {key: {**earlier["margins"].get(key, {}), **later["margins"].get(key, {})} for key in sorted(keys)}
    notes = list(dict.fromkeys([*earlier.get("notes", []), *later.get("notes", [])]))
    return {**later, "runs": {**earlier["runs"], **later["runs"]}, "margins": margins, "notes": notes}


def _margin(relation: Relation, document: dict[str, Any] | None) -> float | None:
    if document is None:
        return None
    return check_relation(relation, document).margin


def margins_markdown(table: dict[str, Any]) -> str:
    """The table for people: the runs with their machines, then per chapter each relation's margin per run."""
    labels = list(table["runs"])
    lines = ["# Smoke margins", "",
             "How far each smoke run is from failing each relation, in the units of the relation's metrics "
             "(positive: it holds). Written by `python -m latentcf margins`; a relation fails a smoke run's check "
             "only where it held at every run of at least 5 seeds under both instruction sets.", "",
             "| run | CPU | ATen kernels | threads | caps | commit | date | notebook seconds by chapter |",
             "|---|---|---|---|---|---|---|---|"]
    for label, run in table["runs"].items():
        cpu = run["cpu"]
        caps = ", ".join(f"{name}={value}" for name, value in run["caps"].items()) or "none"
        seconds = ", ".join(f"{chapter} {value:.0f}" for chapter, value in run["runtime_s"].items())
        lines.append(f"| {label} | {cpu.get('model', '?')} ({', '.join(cpu.get('flags', []))}) | "
                     f"{cpu.get('aten_capability', '?')} | {cpu.get('threads', '?')} | {caps} | "
                     f"{', '.join(run['git_sha'])} | {', '.join(run['dates'])} | {seconds} |")
    lines += ["", *(f"- {note}" for note in table.get("notes", []))]
    for chapter in dict.fromkeys(r.chapter for r in RELATIONS):
        lines += ["", f"## {chapter}", "", "| relation | " + " | ".join(labels) + " | held | smoke check |",
                  "|---|" + "---|" * (len(labels) + 2)]
        for relation in (r for r in RELATIONS if r.chapter == chapter):
            margins = table["margins"].get(relation_key(chapter, relation.text), {})
            power = smoke_power(chapter, relation.text, relation.inclusive, table)
            cells = " | ".join("–" if margins.get(label) is None else f"{margins[label]:.3g}" for label in labels)
            verdict = "gated" if power.shown_everywhere else "reported"
            lines.append(f"| {relation.text.replace('|', chr(92) + '|')} | {cells} | "
                         f"{power.held} of {power.evaluated} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_margins(table: dict[str, Any]) -> tuple[Path, Path]:
    """Write the table into the package (the check reads it) and ``results/smoke/margins.md``."""
    data_path = Path(__file__).resolve().parent.parent / "core" / MARGINS_FILE
    data_path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    page = project_root() / "results" / "smoke" / "margins.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(margins_markdown(table))
    return data_path, page
