"""The one training loop of the library: Adam steps on a loss that the caller defines.

Introduced in ``notebooks/helix``; every model of the book is trained through :func:`fit`.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

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
) -> dict[str, list[float] | float]:
    """Minimise ``loss_fn(step)`` with Adam for ``steps`` steps, with a progress bar.

    ``loss_fn`` draws or selects its own batch (a fresh sample for the toys, the next
    mini-batch for image data) and returns a scalar loss.

    Returns:
        ``{"loss": [one value per step], "train_s": seconds}``.
    """
    model.train()
    optimizer = torch.optim.Adam(model.parameters() if parameters is None else parameters, lr=lr)
    losses = []
    started = time.perf_counter()
    for step in tqdm(range(steps), desc=desc, mininterval=2.0):
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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
