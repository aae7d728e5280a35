"""The one training loop of the library: Adam(W) steps on a loss that the caller defines.

Introduced in ``notebooks/helix``; every model of the book is trained through :func:`fit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm


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
) -> dict[str, list[float] | float]:
    """Minimise ``loss_fn(step)`` with AdamW for ``steps`` steps, with a progress bar.

    ``loss_fn`` draws or selects its own batch (a fresh sample for the toys, the next
    mini-batch for image data) and returns a scalar loss. With the default ``weight_decay = 0``
    AdamW is Adam. ``lr_factor(step)`` multiplies the learning rate (a schedule, e.g. a decay per
    epoch); ``clip_norm`` clips the total gradient norm before each step.

    Returns:
        ``{"loss": [one value per step], "train_s": seconds}``.
    """
    model.train()
    optimizer = torch.optim.AdamW(model.parameters() if parameters is None else parameters, lr=lr,
                                  weight_decay=weight_decay)
    schedule = None if lr_factor is None else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses = []
    started = time.perf_counter()
    for step in tqdm(range(steps), desc=desc, mininterval=2.0):
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_norm)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.detach())
    model.eval()
    return {"loss": torch.stack(losses).cpu().tolist(), "train_s": time.perf_counter() - started}


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
