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
