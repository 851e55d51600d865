"""Linear merging: a weighted average of the inputs, as mergekit 0.1.5 computes it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aloekit.errors import UserError
from aloekit.merge.methods.registry import COMPUTE_DTYPE

# --- pure functions: linear -----------------------------------------------------------------------------------


def linear(tensors: Sequence[torch.Tensor], weights: Sequence[float], *, normalize: bool = True) -> torch.Tensor:
    """Weighted sum ``Σ wᵢ·xᵢ``, divided by ``Σ wᵢ`` when ``normalize`` (mergekit 0.1.5's default: True).

    The weights are rounded to float32 and accumulated in input order, as mergekit does. With ``normalize`` and
    weights summing to exactly 0, mergekit 0.1.5 divides by zero and writes inf/NaN into the model; aloekit
    refuses with a :class:`UserError` instead (the only deliberate deviation in this module).
    """
    w = torch.tensor([float(x) for x in weights], dtype=COMPUTE_DTYPE)
    result = torch.zeros_like(tensors[0], dtype=COMPUTE_DTYPE)
    for tensor, coefficient in zip(tensors, w, strict=True):
        result.addcmul_(tensor.to(COMPUTE_DTYPE), coefficient)
    if normalize:
        total = w.sum()
        if total == 0:
            raise UserError(
                f"linear: the weights {[float(x) for x in weights]} sum to 0 for this tensor, and normalize: true "
                "divides by that sum; change the weights or set normalize: false"
            )
        result.div_(total)
    return result
