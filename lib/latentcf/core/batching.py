"""Bounded-memory evaluation: apply a function to many samples in chunks, without a gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def in_batches(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    """``function`` applied to ``x`` in chunks of ``batch`` rows, concatenated.

    Shapes: ``x: (N, ...) -> (N, ...)``, whatever ``function`` maps one chunk to.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return torch.cat([function(chunk) for chunk in x.split(batch)])
