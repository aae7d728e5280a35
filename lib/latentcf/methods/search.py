"""Batched gradient ascent towards a target class, in data space X or in a latent space Z.

This is Algorithm 1 of Dombrowski et al.: optimise a variable ``v`` (the input ``x`` itself for an
adversarial search, the latent ``z`` with ``x = g(z)`` for a counterfactual search) with Adam until
the classifier reaches the target. All starts are optimised at once; each sample stops on its own
by a mask, and a stopped sample is neither evaluated nor moved again. Introduced in
``notebooks/helix``.

On MNIST images (``notebooks/mnist_diffeo``): the searches in X and in a latent space with the
official loss and stopping rule (:func:`search_in_x`, :func:`search_in_latent`, official
``counterfactuals/adv.py``), and LeapFactual's Opt-based baseline, its Eq. 1 (:func:`opt_counterfactuals`,
``notebooks/mnist_leap``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from tqdm import tqdm

from latentcf.core.errors import LatentcfError, check_targets, check_unit_images
from latentcf.methods.cfm import condition_vector

ScoreFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``score(x, idx) -> (loss, reached)``: per-sample loss ``(n,)`` to minimise and a bool ``(n,)``
that says whether each sample already meets its target; ``idx`` indexes the samples of ``x``
in the full batch (so per-sample targets can be looked up)."""

THRESHOLD = 0.99
"""A search stops once ``softmax(f(x))_target > THRESHOLD`` (Dombrowski et al. App. B.6; ``save_at`` in the official
``main.py``)."""


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
    """One Adam step that leaves the rows of stopped samples exactly where they were.

    The gradient is taken with respect to ``v`` alone: the networks' weights get none (and their
    ``.grad`` stays untouched), which spares a third of the backward pass through them.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=[v])
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


# ------------------------------------------------------------------------- searches on MNIST images


def clip_to_unit(x: torch.Tensor) -> torch.Tensor:
    """Clip values to ``[0, 1]`` without changing the gradient (``counterfactuals/adv.py`` clips ``x.data``)."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


def target_score(classifier: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                 threshold: float = THRESHOLD) -> ScoreFn:
    """Algorithm 1's loss and stopping rule: cross-entropy to each sample's target; stop at ``softmax_t > threshold``.

    ``classifier`` maps inputs to logits ``(n, K)``; ``target: (B,)`` int64 holds the target class of every
    sample of the full batch, on the device of the inputs, and is looked up with the score's ``idx``.
    """

    def score(x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = classifier(x)
        wanted = target[idx]
        reached = logits.softmax(1).gather(1, wanted[:, None]).squeeze(1) > threshold
        return F.cross_entropy(logits, wanted, reduction="none"), reached

    return score


def search_in_x(x_start: torch.Tensor, classifier: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                lr: float, max_steps: int, chunk: int = 500) -> AscentResult:
    """Adversarial search: Adam on the pixels themselves, clipped to ``[0, 1]`` (Dombrowski et al. App. B.6).

    Shapes: ``x_start: (B, 1, 28, 28)`` in ``[0, 1]``, ``target: (B,)`` int64 class per image (checked against
    the width of the classifier's logits) -> ``AscentResult`` with ``x: (B, 1, 28, 28)``. ``chunk`` images
    (and their targets) are searched at once. The clip passes the gradient straight through, so a pixel can be
    pushed past a bound while the classifier sees it at the bound (``counterfactuals/adv.py`` projects the
    pixel instead).
    """
    target = _checked_targets(x_start, classifier, target)
    return _concat([gradient_ascent(part, clip_to_unit, target_score(classifier, part_target), lr, max_steps,
                                    desc="ascent in X")
                    for part, part_target in zip(x_start.split(chunk), target.split(chunk))])


def search_in_latent(x_start: torch.Tensor, classifier: Callable[[torch.Tensor], torch.Tensor],
                     encode: Callable[[torch.Tensor], torch.Tensor], decode: Callable[[torch.Tensor], torch.Tensor],
                     target: torch.Tensor, lr: float, max_steps: int, chunk: int = 500,
                     desc: str = "ascent in Z") -> AscentResult:
    """Counterfactual search: Adam on ``z``, starting at ``encode(x)``; the classifier sees ``clip(decode(z))``.

    The same code serves a flow (exact, Dombrowski et al. Sec. 4.1.3) and a VAE (approximate, Sec. 4.2).
    Shapes: ``x_start: (B, 1, 28, 28)`` in ``[0, 1]``, ``target: (B,)`` int64 class per image (checked against
    the width of the classifier's logits) -> ``x: (B, 1, 28, 28)``, ``v``: the latents. ``chunk`` images (and
    their targets) are searched at once.
    """
    target = _checked_targets(x_start, classifier, target)
    results = []
    for part, part_target in zip(x_start.split(chunk), target.split(chunk)):
        with torch.no_grad():
            z_start = encode(part)
        results.append(gradient_ascent(z_start, lambda z: clip_to_unit(decode(z)),
                                       target_score(classifier, part_target), lr, max_steps, desc=desc))
    return _concat(results)


def _checked_targets(x_start: torch.Tensor, classifier: Callable[[torch.Tensor], torch.Tensor],
                     target: torch.Tensor) -> torch.Tensor:
    """Check the images and their targets (classes ``0..K-1``, ``K`` the classifier's output width on one image)
    and return the targets on the images' device."""
    check_unit_images(x_start)
    with torch.no_grad():
        num_classes = classifier(x_start[:1]).shape[1]
    return check_targets(target, num_classes, len(x_start)).to(x_start.device, torch.long)


def _concat(results: list[AscentResult]) -> AscentResult:
    """The results of consecutive chunks as one (without trajectories)."""
    return AscentResult(x=torch.cat([r.x for r in results]), v=torch.cat([r.v for r in results]),
                        steps=torch.cat([r.steps for r in results]),
                        success=torch.cat([r.success for r in results]), trajectory=None)


# ------------------------------------------------------------- LeapFactual's Opt-based baseline


def opt_counterfactuals(encode: Callable[[torch.Tensor], torch.Tensor], decode: Callable[[torch.Tensor], torch.Tensor],
                        classifier: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, *,
                        steps: int, lr: float, distance_weight: float, weight_decay: float) -> torch.Tensor:
    """The Opt-based baseline (LeapFactual Eq. 1): a gradient search in a latent space, then decode.

    Shapes: ``x: (B, 1, 28, 28)`` in ``[0, 1]``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``;
    ``encode: (B, 1, 28, 28) -> (B, D)`` and ``decode`` back.

    As in ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``: starting at ``z = encode(x)``, ``steps`` AdamW
    steps (official: 1,000, lr 0.2, weight decay 0.01) on
    ``MSE(softmax f(g(z)), onehot(target)) + lambda * L1(g(z), x)`` with ``lambda = distance_weight``
    (official 6e-4), no early stop, all images at once (each image's update is the one it would get
    alone). ``classifier`` must return differentiable torch probabilities ``(B, K)``, whose width ``K``
    is the number of classes; a black-box classifier raises :class:`LatentcfError`, since this method
    needs its gradient.
    """
    check_unit_images(x)
    num_classes = _require_gradients(classifier, x[:1])
    check_targets(target, num_classes, len(x))
    one_hot = condition_vector(target, num_classes, dtype=x.dtype, device=x.device)

    def score(x_decoded: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probability_error = (classifier(x_decoded) - one_hot[idx]).pow(2).mean(dim=1)
        distance = (x_decoded - x[idx]).abs().mean(dim=(1, 2, 3))
        loss = probability_error + distance_weight * distance
        return loss, torch.zeros(len(idx), dtype=torch.bool, device=x.device)

    with torch.no_grad():
        z_start = encode(x)
    result = gradient_ascent(z_start, decode, score, lr, steps, desc="Opt-based", weight_decay=weight_decay)
    return result.x.detach()


def _require_gradients(classifier: Callable, x: torch.Tensor) -> int:
    """The number of classes of ``classifier``, or :class:`LatentcfError` unless it gives probabilities
    ``(1, K)`` with a gradient w.r.t. its input ``x: (1, ...)``."""
    probe = x.detach().clone().requires_grad_(True)
    output = classifier(probe)
    if not (isinstance(output, torch.Tensor) and output.requires_grad):
        raise LatentcfError("the Opt-based method follows the classifier's gradient, but this classifier returns "
                            f"{type(output).__name__} without one (a black box); use LeapFactual, which needs none")
    return output.shape[1]
