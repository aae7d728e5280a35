"""Batched gradient ascent towards a target class, in data space X or in a latent space Z.

This is Algorithm 1 of Dombrowski et al.: optimise a variable ``v`` (the input ``x`` itself for an
adversarial search, the latent ``z`` with ``x = g(z)`` for a counterfactual search) with Adam until
the classifier reaches the target. All starts are optimised at once; each sample stops on its own
by a mask, and a stopped sample is neither evaluated nor moved again. Introduced in
``notebooks/helix``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

ScoreFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``score(x, idx) -> (loss, reached)``: per-sample loss ``(n,)`` to minimise and a bool ``(n,)``
that says whether each sample already meets its target; ``idx`` indexes the samples of ``x``
in the full batch (so per-sample targets can be looked up)."""


@dataclass
class AscentResult:
    """The outcome of :func:`gradient_ascent` for a batch of ``B`` starts.

    Shapes: ``x: (B, *X)``, ``v: (B, *V)``, ``steps: (B,)``, ``success: (B,)``,
    ``trajectory: (S + 1, B, *X)`` or ``None`` (a stopped sample repeats its last point).
    """

    x: torch.Tensor
    v: torch.Tensor
    steps: torch.Tensor
    success: torch.Tensor
    trajectory: torch.Tensor | None


def gradient_ascent(
    v_start: torch.Tensor,
    to_x: Callable[[torch.Tensor], torch.Tensor],
    score: ScoreFn,
    lr: float,
    max_steps: int,
    record_trajectory: bool = False,
    desc: str = "gradient ascent",
    weight_decay: float = 0.0,
) -> AscentResult:
    """Optimise every start until its target is reached or ``max_steps`` updates were made.

    Each iteration evaluates ``x = to_x(v)`` for the still-active samples, stops those whose
    target is reached, and takes one Adam step on the sum of the others' losses (a sum, so that
    each sample's update equals the update it would get alone). The point after the last update
    is checked too, so a sample succeeds within ``max_steps`` updates.

    Args:
        v_start: ``(B, *V)`` starting values of the optimised variable.
        to_x: maps ``v`` to the classifier's input (identity for X, the generator for Z).
        score: see :data:`ScoreFn`.
        lr: Adam learning rate.
        max_steps: the largest number of updates per sample.
        record_trajectory: keep ``x`` after every step (memory ``(S + 1) * B * |X|``).
        weight_decay: decoupled weight decay (AdamW); ``0`` is plain Adam.
    """
    v = v_start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay)
    active = torch.ones(len(v), dtype=torch.bool, device=v.device)
    steps = torch.zeros(len(v), dtype=torch.long, device=v.device)
    with torch.no_grad():
        x_now = to_x(v).detach()
    trajectory = [x_now.clone()] if record_trajectory else None
    for step in tqdm(range(max_steps + 1), desc=desc, mininterval=2.0):
        idx = active.nonzero().squeeze(1)
        x = to_x(v[idx])
        loss, reached = score(x, idx)
        x_now[idx] = x.detach()
        active[idx[reached]] = False
        if step == max_steps or not active.any():
            break
        _masked_adam_step(optimizer, v, loss[~reached].sum(), active)
        steps[active] += 1
        if record_trajectory:
            trajectory.append(_moved(x_now, to_x, v, active))
    return AscentResult(x=x_now, v=v.detach(), steps=steps, success=~active,
                        trajectory=torch.stack(trajectory) if record_trajectory else None)


def _masked_adam_step(optimizer: torch.optim.Optimizer, v: torch.Tensor, loss: torch.Tensor,
                      active: torch.Tensor) -> None:
    """One Adam step that leaves the rows of stopped samples exactly where they were."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    frozen = v.detach()[~active].clone()
    optimizer.step()
    with torch.no_grad():
        v[~active] = frozen


def _moved(x_now: torch.Tensor, to_x: Callable, v: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``x`` of every sample after a step (only the active ones moved)."""
    x_step = x_now.clone()
    with torch.no_grad():
        x_step[active] = to_x(v[active])
    return x_step
