"""The generalized task arithmetic family (task arithmetic, TIES, DARE, breadcrumbs): sign consensus and the merge."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import torch

from aloekit.merge.methods.registry import COMPUTE_DTYPE, Consensus, Sparsifier
from aloekit.merge.methods.sparsify import (
    _MASK_THREAD,
    _apply_mask,
    _draw_masks,
    magnitude_outliers_prune,
    magnitude_prune,
)

NONCONSENSUS_DIVISOR_EPS = 1e-8
"""Without sign consensus, a weight sum with ``abs < 1e-8`` is replaced by 1 when normalising (mergekit 0.1.5)."""


# --- pure functions: task arithmetic family -------------------------------------------------------------------


def sign_consensus_mask(weighted_deltas: torch.Tensor, method: Consensus = "sum") -> torch.Tensor:
    """TIES sign election over dim 0 of ``[models, *shape]`` weighted deltas: True where an entry agrees.

    ``sum`` (the TIES paper, and the only one reachable from a mergekit 0.1.5 config): the elected sign is that
    of ``Σ deltas``; ``count``: that of ``Σ sign(deltas)``. A tie (sum exactly 0) elects ``+``. Entries that are
    exactly 0 never agree (their sign is 0), so they do not count in the normalising divisor either.
    ``int8_mask`` in mergekit only changes the dtype of this intermediate, never its value, so it is accepted
    and ignored here.
    """
    if method == "sum":
        # sign(d) == elected, without materialising sign(d): fewer passes over [models, *shape].
        positive = weighted_deltas.sum(dim=0) >= 0
        return torch.where(positive, weighted_deltas > 0, weighted_deltas < 0)
    signs = torch.sign(weighted_deltas)
    if method == "count":
        elected = torch.where(signs.sum(dim=0) >= 0, 1.0, -1.0)
    else:
        raise ValueError(f"unknown sign consensus method {method!r}: use 'sum' or 'count'")
    return signs == elected


def task_arithmetic_family(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    densities: Sequence[float] | None = None,
    gammas: Sequence[float] | None = None,
    sparsifier: Sparsifier | None = None,
    consensus: Consensus | None = None,
    normalize: bool = False,
    rescale: bool = False,
    lambda_: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generalized task arithmetic (task_arithmetic, ties, dare_*, breadcrumbs*), as mergekit 0.1.5 computes it.

    1. ``deltaᵢ = xᵢ - base`` for each non-base tensor, sparsified on its own (``magnitude``: TIES trimming,
       ``random``: DARE, ``magnitude_outliers``: breadcrumbs) with its ``density`` (and ``gamma``), rescaled to
       its L1 mass when ``rescale``. Sparsification comes *before* weighting.
    2. ``deltaᵢ *= weightᵢ`` (float32 weights; negative weights flip the delta before the sign election).
    3. With ``consensus``: keep only entries agreeing with the elected sign (:func:`sign_consensus_mask`), sum
       them; the divisor is the sum of the weights of the agreeing entries, per entry, with 0 replaced by 1.
       Without: sum everything; the divisor is ``Σ weights`` with ``|Σ| < 1e-8`` replaced by 1.
    4. ``normalize``: divide by the divisor. 5. ``lambda != 1``: multiply the merged delta by ``lambda``.
    6. ``base + merged delta``. No non-base tensor at all: the base itself.
    """
    base = base.to(COMPUTE_DTYPE)
    if not tensors:
        return base.clone()
    count = len(tensors)
    densities = list(densities) if densities is not None else [1.0] * count
    gammas = list(gammas) if gammas is not None else [0.01] * count
    deltas = torch.empty((count, *base.shape), dtype=COMPUTE_DTYPE, device=base.device)
    masks: Future[list[torch.Tensor | None]] | None = None
    if sparsifier == "random":
        # The masks are drawn on another thread while the deltas (and their L1 norms) are computed here; the
        # draws come from the same generator in the same order as dare_drop would make them, so the result is
        # identical to calling dare_drop on each delta in turn.
        masks = _MASK_THREAD.submit(_draw_masks, base.shape, [float(d) for d in densities], generator, base.device)
    try:
        for index, tensor in enumerate(tensors):
            # Each delta is computed straight into its row; DARE then masks it in place (no per-model temporaries).
            delta = torch.sub(tensor.to(COMPUTE_DTYPE), base, out=deltas[index])
            density = float(densities[index])
            if sparsifier == "magnitude":
                delta = magnitude_prune(delta, density, rescale=rescale)
            elif sparsifier == "random":
                assert masks is not None
                before = delta.abs().sum() if rescale and density < 1 else None
                mask = masks.result()[index]
                if mask is not None:
                    _apply_mask(delta, mask, rescale, inplace=True, before=before)
            elif sparsifier == "magnitude_outliers":
                delta = magnitude_outliers_prune(delta, density, float(gammas[index]), rescale=rescale)
            elif sparsifier is not None:
                raise ValueError(f"unknown sparsifier {sparsifier!r}")
            if delta.data_ptr() != deltas[index].data_ptr():  # a sparsifier that returned a new tensor
                deltas[index] = delta
    finally:
        if masks is not None:
            masks.exception()  # never leave a draw running on the shared generator

    w = torch.tensor([float(x) for x in weights], dtype=COMPUTE_DTYPE, device=base.device)
    w = w.reshape((count,) + (1,) * (deltas.dim() - 1))
    deltas.mul_(w)

    if consensus is not None:
        agree = sign_consensus_mask(deltas, consensus)
        if normalize:  # the divisor is only needed to normalise (dare_ties does not, by default)
            divisor = (w * agree).sum(dim=0)
            divisor[divisor == 0] = 1
        merged = deltas.mul_(agree).sum(dim=0)
    else:
        merged = deltas.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < NONCONSENSUS_DIVISOR_EPS] = 1

    if normalize:
        merged /= divisor
    if lambda_ != 1:
        merged *= lambda_
    return base + merged
