"""Sparsifying a task vector (TIES trimming, Model Breadcrumbs, DARE) and L1 rescaling, as mergekit 0.1.5 does."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from aloekit.merge.methods.registry import COMPUTE_DTYPE

RESCALE_EPS = 1e-7
"""Below this L1 norm (before or after masking) a masked delta is not rescaled, as mergekit 0.1.5 does."""


# --- pure functions: sparsification ---------------------------------------------------------------------------


def rescale_l1(delta: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Scale ``masked`` so its L1 norm equals ``delta``'s: mergekit 0.1.5's ``rescale`` rule for every sparsifier.

    Note that 0.1.5 does *not* divide by ``density`` (the DARE paper's rule): it multiplies the kept entries by
    ``Σ|delta| / Σ|masked|``, which is close to ``1/density`` for large random masks but exact in L1 mass. When
    either norm is below 1e-7 (e.g. an all-zero delta, or everything dropped) the masked delta is returned as is.
    """
    before = delta.abs().sum()
    after = masked.abs().sum()
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return masked
    return masked * (before / after)


def _apply_mask(
    delta: torch.Tensor,
    mask: torch.Tensor,
    rescale: bool,
    *,
    inplace: bool = False,
    before: torch.Tensor | None = None,
) -> torch.Tensor:
    """``delta * mask`` (rescaled to the L1 mass of ``delta``), overwriting ``delta`` when ``inplace``: the same
    arithmetic as :func:`rescale_l1`, without two full-size temporaries per model. ``before``: ``Σ|delta|`` when
    the caller has it already."""
    if not inplace:
        masked = delta * mask
        return rescale_l1(delta, masked) if rescale else masked
    if rescale and before is None:
        before = delta.abs().sum()
    delta.mul_(mask)
    if before is not None:
        after = delta.abs().sum()
        if before >= RESCALE_EPS and after >= RESCALE_EPS:
            delta.mul_(before / after)
    return delta


def magnitude_prune(delta: torch.Tensor, density: float, *, rescale: bool = False) -> torch.Tensor:
    """TIES trimming: keep the ``k = max(1, int(density·numel))`` entries of largest magnitude, zero the rest.

    As mergekit 0.1.5: ``density >= 1`` returns the delta untouched; ``density <= 0`` (or an empty tensor) returns
    zeros; otherwise at least one entry survives. Ranking is ``torch.argsort(|delta|, descending=True)``, so
    entries of exactly equal magnitude at the cut are chosen the same way mergekit chooses them on CPU.
    """
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    keep = max(1, int(density * delta.numel()))
    order = torch.argsort(delta.abs().reshape(-1).float(), descending=True)
    mask = torch.zeros(delta.numel(), dtype=delta.dtype, device=delta.device)
    mask[order[:keep]] = 1
    return _apply_mask(delta, mask.reshape(delta.shape), rescale)


def magnitude_outliers_prune(
    delta: torch.Tensor, density: float, gamma: float = 0.01, *, rescale: bool = False
) -> torch.Tensor:
    """Model Breadcrumbs: drop the largest ``gamma`` fraction (outliers) and the smallest, keep ``density``.

    As mergekit 0.1.5, with ``n = numel``: ``keep = int(density·n)``, ``top = int(gamma·n)``,
    ``bottom = max(0, n - keep - top)``; entries sorted by ascending magnitude, positions ``[bottom, bottom+keep)``
    survive. When ``density + gamma > 1`` fewer outliers are dropped so that ``keep`` entries remain. Unlike TIES
    trimming, nothing guarantees a survivor (``int`` truncates), and ``density >= 1`` returns the delta untouched
    whatever ``gamma`` is (no outlier removal at all).
    """
    if density >= 1:
        return delta
    n = delta.numel()
    keep = int(density * n)
    top = int(gamma * n)
    bottom = max(0, n - keep - top)
    order = torch.sort(delta.abs().reshape(-1).float(), descending=False).indices
    mask = torch.zeros(n, dtype=delta.dtype, device=delta.device)
    mask[order[bottom : bottom + keep]] = 1
    return _apply_mask(delta, mask.reshape(delta.shape), rescale)


def dare_drop(
    delta: torch.Tensor,
    density: float,
    *,
    rescale: bool = True,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """DARE: keep each entry independently with probability ``density``, then (``rescale``) restore the L1 mass.

    As mergekit 0.1.5: ``density >= 1`` returns the delta untouched and draws nothing; rescaling is
    :func:`rescale_l1`, not ``1/density``. The mask is ``rand < density`` from ``generator`` (None: torch's global
    generator, which is what mergekit uses). On CPU that is exactly the mask mergekit's ``torch.bernoulli`` over a
    tensor filled with ``density`` draws from the same generator state (the parity tests check it), at about a
    fifth of the cost: ``bernoulli`` with a tensor of probabilities was the largest cost of a DARE merge.
    ``inplace`` overwrites ``delta`` (a float32 tensor the caller owns) instead of allocating the result.
    """
    if density >= 1:
        return delta
    mask = torch.rand(delta.shape, generator=generator, dtype=COMPUTE_DTYPE, device=delta.device) < density
    return _apply_mask(delta.to(COMPUTE_DTYPE), mask, rescale, inplace=inplace and delta.dtype == COMPUTE_DTYPE)


_MASK_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aloe-dare-masks")
"""torch.rand is single-threaded on CPU: drawing DARE's masks beside the delta arithmetic keeps both cores busy."""


def _draw_masks(
    shape: torch.Size, densities: Sequence[float], generator: torch.Generator | None, device: torch.device
) -> list[torch.Tensor | None]:
    """DARE keep masks for each model, drawn in model order from one generator (exactly as :func:`dare_drop`
    draws them one model after the other); None where ``density >= 1`` draws nothing."""
    return [
        None if d >= 1 else torch.rand(shape, generator=generator, dtype=COMPUTE_DTYPE, device=device) < d
        for d in densities
    ]
