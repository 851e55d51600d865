"""Model Stock (Jang et al. 2024), as mergekit 0.1.5 computes it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aloekit.errors import UserError
from aloekit.merge.methods.registry import COMPUTE_DTYPE

MODEL_STOCK_NORM_EPS = 1e-6
"""model_stock clamps the product of offset norms to at least 1e-6 before dividing (mergekit 0.1.5)."""

MODEL_STOCK_SINGULAR_EPS = 1e-6
"""model_stock keeps the base where ``|1 + (N-1)·cos| < 1e-6`` (no finite interpolation ratio exists there)."""


# --- pure functions: model_stock ------------------------------------------------------------------------------


def model_stock(base: torch.Tensor, tensors: Sequence[torch.Tensor], *, filter_wise: bool = False) -> torch.Tensor:
    """Model Stock (Jang et al. 2024): move from the base toward the average of N >= 2 fine-tunes by a ratio t.

    As mergekit 0.1.5: offsets ``dᵢ = xᵢ - base``; ``cos`` is the mean over all pairs ``i < j`` of
    ``dᵢ·dⱼ / max(‖dᵢ‖‖dⱼ‖, 1e-6)`` (each clamped to [-1, 1]), computed over the whole flattened tensor, or, with
    ``filter_wise``, separately along the last dimension (one ratio per row; a 1-D tensor is one row).
    ``t = N·cos / (1 + (N-1)·cos)``, and where ``|1 + (N-1)·cos| < 1e-6`` t is 0 (the base is kept).
    Result ``t·mean(xᵢ) + (1-t)·base``. All-zero offsets give cos 0, t 0: the base.
    """
    if len(tensors) < 2:
        raise UserError(f"model_stock: needs a base_model and at least 2 other models; got {len(tensors)} other(s)")
    out_shape = base.shape
    w0 = base.to(COMPUTE_DTYPE)
    ws = [x.to(COMPUTE_DTYPE) for x in tensors]
    if filter_wise:
        if w0.dim() == 1:
            w0 = w0.unsqueeze(0)
            ws = [x.unsqueeze(0) for x in ws]
    else:
        w0 = w0.reshape(-1)
        ws = [x.reshape(-1) for x in ws]
    offsets = [x - w0 for x in ws]
    cosines = []
    for i, first in enumerate(offsets):
        for second in offsets[i + 1 :]:
            norms = torch.linalg.vector_norm(first, dim=-1) * torch.linalg.vector_norm(second, dim=-1)
            cosines.append(((first * second).sum(dim=-1) / norms.clamp(min=MODEL_STOCK_NORM_EPS)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(ws)
    denominator = 1 + (n - 1) * cos
    singular = denominator.abs() < MODEL_STOCK_SINGULAR_EPS
    ratio = torch.where(
        singular, torch.zeros_like(cos), (n * cos) / torch.where(singular, torch.ones_like(denominator), denominator)
    )
    average = ws[0]
    for x in ws[1:]:
        average = average + x
    average = average / n
    return (ratio * average + (1 - ratio) * w0).reshape(out_shape)
