"""SLERP: spherical interpolation between two tensors, as mergekit 0.1.5 computes it."""

from __future__ import annotations

import torch

from aloekit.merge.methods.registry import COMPUTE_DTYPE

SLERP_DOT_THRESHOLD = 0.9995
"""``|cos| > 0.9995`` between the two tensors: colinear (or antipodal), so SLERP falls back to plain lerp."""

SLERP_NORM_EPS = 1e-8
"""A tensor whose L2 norm is ``<= 1e-8`` is not normalised (its norm is taken as 1) when computing the angle."""

SLERP_BLOCK = 1024 * 1024
"""Block size (elements) of SLERP's norm and dot reductions, as mergekit 0.1.5 chunks them."""


# --- pure functions: slerp ------------------------------------------------------------------------------------


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``v0`` (``t = 0``, the base) to ``v1`` (``t = 1``), over the whole tensor.

    As mergekit 0.1.5: the angle is taken between the two tensors flattened to vectors (not row by row), using
    ``cos = Σ (v0/‖v0‖)·(v1/‖v1‖)`` clamped to [-1, 1]; a norm ``<= 1e-8`` counts as 1 (an all-zero tensor then
    gives ``cos = 0``, a right angle: the result is ``sin(t·π/2)·v1``, not a lerp). When ``|cos| > 0.9995``
    (colinear *or antipodal*) it falls back to plain lerp ``(1-t)·v0 + t·v1``. Otherwise
    ``sin((1-t)θ)/sin θ · v0 + sin(tθ)/sin θ · v1`` with ``θ = acos(cos)``, applied to the *unnormalised*
    tensors (the result is not renormalised). ``t`` is a float32 scalar and is not clamped to [0, 1].
    """
    a = v0.to(COMPUTE_DTYPE).reshape(-1)
    b = v1.to(COMPUTE_DTYPE).reshape(-1)
    tt = torch.tensor(float(t), dtype=COMPUTE_DTYPE)
    if a.numel() == 0:
        return ((1 - tt) * a + tt * b).reshape(v0.shape)
    # Reductions run over consecutive blocks of SLERP_BLOCK elements and are then combined (norm of the block
    # norms, sum of the block dots), so the float32 rounding is the same as mergekit 0.1.5's on large tensors.
    blocks = range(0, a.numel(), SLERP_BLOCK)
    norm_a = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(a[i : i + SLERP_BLOCK]) for i in blocks]))
    norm_b = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(b[i : i + SLERP_BLOCK]) for i in blocks]))
    norm_a = torch.where(norm_a > SLERP_NORM_EPS, norm_a, 1)
    norm_b = torch.where(norm_b > SLERP_NORM_EPS, norm_b, 1)
    dots = [((a[i : i + SLERP_BLOCK] / norm_a) * (b[i : i + SLERP_BLOCK] / norm_b)).sum() for i in blocks]
    cos = torch.stack(dots).sum().clamp(-1, 1)
    if cos.abs() > SLERP_DOT_THRESHOLD:
        coef_a, coef_b = 1 - tt, tt
    else:
        theta = torch.acos(cos)
        sin_theta = torch.sin(theta)
        coef_a = torch.sin((1 - tt) * theta) / sin_theta
        coef_b = torch.sin(tt * theta) / sin_theta
    return (coef_a * a + coef_b * b).reshape(v0.shape)
