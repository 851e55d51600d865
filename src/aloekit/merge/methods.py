"""Model-merging math: one tensor at a time, equal to mergekit 0.1.5.

Every method here reproduces what ``mergekit-yaml`` 0.1.5 computes for one tensor of one output slice; the
implementation is aloekit's own, written from mergekit's documented and observed semantics (mergekit is LGPL;
none of its code is copied). ``tests/test_merge_methods.py`` checks parity against mergekit itself.

The entry point is :func:`merge_tensor`; :data:`METHODS` describes each method's parameters and their mergekit
0.1.5 defaults (``None`` marks a parameter mergekit requires). The math is also available as small pure functions
(:func:`linear`, :func:`task_arithmetic_family`, :func:`magnitude_prune`, :func:`magnitude_outliers_prune`,
:func:`dare_drop`, :func:`sign_consensus_mask`, :func:`slerp`, :func:`model_stock`).

Conventions shared by all methods, as in mergekit 0.1.5:

* **Inputs of a merge.** A config's ``models:`` in YAML order; when ``base_model`` is set but not listed in
  ``models:``, mergekit's planner appends it as the *last* input (without per-model parameters). Methods that
  need a base (task arithmetic family, slerp, model_stock) treat that input as the base wherever it sits;
  ``linear`` ignores the notion of a base and merges it as one more input.
* **The base's own parameters** (``weight``, ``density``, ... written under the base's entry in ``models:``) are
  ignored by the methods that need a base: mergekit does not even resolve them, so a base without ``weight`` is
  fine. ``linear`` does use the base's ``weight``.
* **Compute dtype.** Always float32 here. mergekit 0.1.5 computes ``linear`` and ``slerp`` in float32 (float64
  for float64 inputs) but the task arithmetic family and ``model_stock`` in the inputs' promoted dtype, so those
  agree with mergekit exactly when the config says ``dtype: float32`` (or the checkpoints are float32); on bf16
  inputs mergekit's own arithmetic rounds to bf16 at every step and ours does not.
* **Coefficients** (weights, ``t``) are rounded to float32 before use, as mergekit packs them into tensors of the
  compute dtype; ``density`` and ``gamma`` are used as Python floats where mergekit does (counts of kept entries).
* **Randomness.** DARE draws its Bernoulli masks from the ``torch.Generator`` passed to :func:`merge_tensor`, one
  ``torch.bernoulli`` call per non-base model in input order, over a float32 tensor filled with ``density`` —
  the same draw mergekit makes from torch's *global* generator. So a generator seeded like mergekit's global
  state at that tensor yields identical masks (the tests do exactly that), but a whole-model mergekit run
  cannot be matched bit for bit: mergekit seeds once (``--random-seed``) and the state at each tensor depends on
  its task execution order. Same generator state here -> same output, always.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch

from aloekit.errors import UserError

__all__ = [
    "METHODS",
    "Method",
    "dare_drop",
    "linear",
    "magnitude_outliers_prune",
    "magnitude_prune",
    "merge_tensor",
    "model_stock",
    "rescale_l1",
    "sign_consensus_mask",
    "slerp",
    "task_arithmetic_family",
]

COMPUTE_DTYPE = torch.float32

RESCALE_EPS = 1e-7
"""Below this L1 norm (before or after masking) a masked delta is not rescaled, as mergekit 0.1.5 does."""

NONCONSENSUS_DIVISOR_EPS = 1e-8
"""Without sign consensus, a weight sum with ``abs < 1e-8`` is replaced by 1 when normalising (mergekit 0.1.5)."""

SLERP_DOT_THRESHOLD = 0.9995
"""``|cos| > 0.9995`` between the two tensors: colinear (or antipodal), so SLERP falls back to plain lerp."""

SLERP_NORM_EPS = 1e-8
"""A tensor whose L2 norm is ``<= 1e-8`` is not normalised (its norm is taken as 1) when computing the angle."""

SLERP_BLOCK = 1024 * 1024
"""Block size (elements) of SLERP's norm and dot reductions, as mergekit 0.1.5 chunks them."""

MODEL_STOCK_NORM_EPS = 1e-6
"""model_stock clamps the product of offset norms to at least 1e-6 before dividing (mergekit 0.1.5)."""

MODEL_STOCK_SINGULAR_EPS = 1e-6
"""model_stock keeps the base where ``|1 + (N-1)·cos| < 1e-6`` (no finite interpolation ratio exists there)."""


# --- the registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """What a merge method reads, as mergekit 0.1.5 declares it.

    ``model_params`` are resolved per model (a model's own ``parameters:``, then the slice's, then the top-level
    ones); ``global_params`` once per tensor from the method-level ``parameters:``. ``defaults`` holds mergekit
    0.1.5's default for every one of them; ``None`` means mergekit has no default (the parameter is required).
    """

    name: str
    needs_base: bool
    random: bool  # draws random masks (DARE): needs a generator
    model_params: frozenset[str]  # per-model parameters read, e.g. {"weight", "density"}
    global_params: frozenset[str]  # method-level parameters, e.g. {"normalize", "int8_mask", "lambda", "rescale", "t"}
    defaults: Mapping[str, float | bool | None]  # mergekit 0.1.5 defaults for every parameter above


_BOOL_PARAMS = frozenset({"normalize", "int8_mask", "rescale", "filter_wise"})

Sparsifier = Literal["magnitude", "random", "magnitude_outliers"]
Consensus = Literal["sum", "count"]


@dataclass(frozen=True)
class _TaskArithmeticVariant:
    """One registered flavour of mergekit's generalized task arithmetic (its defaults differ per flavour)."""

    sparsifier: Sparsifier | None
    consensus: Consensus | None
    default_normalize: bool
    default_rescale: bool


# mergekit 0.1.5's registry (merge_methods/registry.py). All consensus flavours use "sum": 0.1.5 has no config
# parameter that selects "count". Note the normalize defaults: True only for ties; dare_ties, dare_linear,
# breadcrumbs and breadcrumbs_ties default to False. rescale defaults to True only for the DARE flavours.
_TASK_ARITHMETIC: dict[str, _TaskArithmeticVariant] = {
    "task_arithmetic": _TaskArithmeticVariant(None, None, default_normalize=False, default_rescale=False),
    "ties": _TaskArithmeticVariant("magnitude", "sum", default_normalize=True, default_rescale=False),
    "dare_ties": _TaskArithmeticVariant("random", "sum", default_normalize=False, default_rescale=True),
    "dare_linear": _TaskArithmeticVariant("random", None, default_normalize=False, default_rescale=True),
    "breadcrumbs": _TaskArithmeticVariant("magnitude_outliers", None, default_normalize=False, default_rescale=False),
    "breadcrumbs_ties": _TaskArithmeticVariant(
        "magnitude_outliers", "sum", default_normalize=False, default_rescale=False
    ),
}


def _task_arithmetic_method(name: str, variant: _TaskArithmeticVariant) -> Method:
    # Every flavour accepts density, rescale and int8_mask (mergekit declares them for all of them), even where
    # they have no effect: density without a sparsifier, int8_mask without sign consensus.
    model_defaults: dict[str, float | bool | None] = {"weight": None, "density": 1.0}
    if variant.sparsifier == "magnitude_outliers":
        model_defaults["gamma"] = 0.01
    global_defaults: dict[str, float | bool | None] = {
        "int8_mask": False,
        "normalize": variant.default_normalize,
        "rescale": variant.default_rescale,
        "lambda": 1.0,
    }
    return Method(
        name=name,
        needs_base=True,
        random=variant.sparsifier == "random",
        model_params=frozenset(model_defaults),
        global_params=frozenset(global_defaults),
        defaults=MappingProxyType({**model_defaults, **global_defaults}),
    )


METHODS: dict[str, Method] = {
    "linear": Method(
        name="linear",
        needs_base=False,
        random=False,
        model_params=frozenset({"weight"}),
        global_params=frozenset({"normalize"}),
        defaults=MappingProxyType({"weight": None, "normalize": True}),
    ),
    **{name: _task_arithmetic_method(name, variant) for name, variant in _TASK_ARITHMETIC.items()},
    "slerp": Method(
        name="slerp",
        needs_base=True,
        random=False,
        model_params=frozenset(),
        global_params=frozenset({"t"}),
        defaults=MappingProxyType({"t": None}),
    ),
    "model_stock": Method(
        name="model_stock",
        needs_base=True,
        random=False,
        model_params=frozenset(),
        global_params=frozenset({"filter_wise"}),
        defaults=MappingProxyType({"filter_wise": False}),
    ),
}
"""The methods aloekit implements, by mergekit 0.1.5 name.

Not implemented (mergekit-only): della and della_linear (the only 0.1.5 methods with an ``epsilon`` parameter,
default 0.15), passthrough, nuslerp, multislerp, karcher, sce, nearswap, arcee_fusion, ram, ramplus_tl.
"""


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


# --- parameter handling ---------------------------------------------------------------------------------------


def _coerce(method: str, name: str, value: object, where: str) -> float | bool:
    """Validate a resolved value like mergekit's pydantic types do: bools (or 0/1) and real numbers."""
    label = f"{where} {name}" if where else name
    if name in _BOOL_PARAMS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise UserError(f"{method}: {label} must be true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise UserError(f"{method}: {label} must be a number, got {value!r}")
    return float(value)


def _resolve(
    spec: Method, names: frozenset[str], supplied: Mapping[str, object], where: str
) -> dict[str, float | bool]:
    """Look ``names`` up in ``supplied`` (None counts as unset, as in mergekit) and fill mergekit's defaults.

    ``where`` names the model (``models[1]``, ``base_model``) for per-model parameters, "" for method-level ones.
    """
    resolved: dict[str, float | bool] = {}
    for name in sorted(names):
        value = supplied.get(name)
        if value is None:
            value = spec.defaults[name]
            if value is None:
                if where:
                    hint = f"set it in that model's parameters (or the merge-level parameters:) for {spec.name}"
                    raise UserError(f"{spec.name}: missing required parameter '{name}' for {where}; {hint}")
                raise UserError(f"{spec.name}: missing required parameter '{name}'; set it under parameters:")
        resolved[name] = _coerce(spec.name, name, value, where)
    return resolved


def _check_density(method: str, where: str, density: float) -> None:
    # mergekit 0.1.5 has no check: a negative density crashes torch.bernoulli (DARE), zeroes the delta (TIES) or
    # slices the sort order from the wrong end (breadcrumbs). It is always a config mistake, so say so.
    if density < 0:
        raise UserError(f"{method}: {where} density must be >= 0, got {density}")


# --- the entry point ------------------------------------------------------------------------------------------


def merge_tensor(
    method: str,
    *,
    models: Sequence[tuple[torch.Tensor, Mapping[str, float]]],
    base: torch.Tensor | None,
    base_index: int | None,
    params: Mapping[str, float | bool],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Merge one tensor exactly as mergekit 0.1.5 would; float32 result of the inputs' shape.

    ``models``: the config's ``models:`` entries in YAML order, each with its per-model parameters already
    resolved for this tensor (own, then slice, then merge-level ``parameters:``; filters and gradients applied).
    ``base``: the ``base_model``'s tensor, or None without a base_model. ``base_index``: the base's position in
    ``models`` when the YAML lists it there too (then ``models[base_index]`` is the base and its per-model
    parameters are ignored, except by ``linear``), else None: the base then joins as the last input, as mergekit's
    planner appends it. ``params``: the method-level parameters resolved for this tensor; missing keys (or None)
    take mergekit's defaults (:data:`METHODS`). ``generator``: for DARE's masks (None: torch's global generator).

    ``linear`` ignores the base's role: an appended base is merged as one more input, and (like mergekit, which
    resolves it only from the merge-level ``parameters:``) its ``weight`` is read from ``params``; without one
    mergekit 0.1.5 fails with "missing required parameter weight", and so does this.

    Raises :class:`UserError` (one line) for an unknown method, a missing required parameter, a method that needs
    a base without one, a wrong number of inputs (slerp: base + exactly 1; model_stock: base + at least 2),
    mismatched shapes, or non-finite output that mergekit would silently write (linear, weights summing to 0).
    ``ValueError`` for inconsistent arguments (a programming error, not the user's).
    """
    spec = METHODS.get(method)
    if spec is None:
        raise UserError(f"unknown merge method '{method}': use one of {', '.join(METHODS)}")
    if base_index is not None:
        if not 0 <= base_index < len(models):
            raise ValueError(f"base_index {base_index} is out of range for {len(models)} models")
        if base is None:
            raise ValueError("base_index is set but base is None: pass the base_model's tensor as base too")

    # The inputs as mergekit's planner lines them up: the YAML models, then the base if not listed.
    tensors = [tensor for tensor, _ in models]
    per_model: list[Mapping[str, object]] = [model_params for _, model_params in models]
    labels = [f"models[{i}]" for i in range(len(models))]
    base_pos = base_index
    if base is not None and base_index is None:
        tensors.append(base)
        per_model.append(params)  # only linear reads them: mergekit resolves the appended base's from `parameters:`
        labels.append("base_model")
        base_pos = len(tensors) - 1
    if not tensors:
        raise UserError(f"{method}: nothing to merge: no models and no base_model")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise UserError(f"{method}: the models' tensors differ in shape ({', '.join(map(str, sorted(shapes)))})")
    if spec.needs_base and base is None:
        raise UserError(f"{method}: needs a base_model; add base_model: to the config")

    shared = _resolve(spec, spec.global_params, params, "")
    non_base = [i for i in range(len(tensors)) if i != base_pos]

    if method == "linear":
        weights = [_resolve(spec, spec.model_params, per_model[i], labels[i])["weight"] for i in range(len(tensors))]
        return linear(tensors, weights, normalize=bool(shared["normalize"]))

    assert base is not None and base_pos is not None
    base_tensor = tensors[base_pos]

    if method == "slerp":
        if len(tensors) != 2:
            raise UserError(
                f"slerp: merges exactly 2 models, the base_model and one other; got {len(tensors)} "
                "(counting base_model once, listed in models or not)"
            )
        return slerp(float(shared["t"]), base_tensor, tensors[non_base[0]])

    if method == "model_stock":
        if len(non_base) < 2:
            raise UserError(
                f"model_stock: needs a base_model and at least 2 other models; got {len(non_base)} other(s)"
            )
        return model_stock(base_tensor, [tensors[i] for i in non_base], filter_wise=bool(shared["filter_wise"]))

    variant = _TASK_ARITHMETIC[method]
    resolved = [_resolve(spec, spec.model_params, per_model[i], labels[i]) for i in non_base]
    for i, values in zip(non_base, resolved, strict=True):
        _check_density(method, labels[i], float(values["density"]))
    return task_arithmetic_family(
        base_tensor,
        [tensors[i] for i in non_base],
        [float(values["weight"]) for values in resolved],
        densities=[float(values["density"]) for values in resolved],
        gammas=[float(values.get("gamma", 0.01)) for values in resolved],
        sparsifier=variant.sparsifier,
        consensus=variant.consensus,
        normalize=bool(shared["normalize"]),
        rescale=bool(shared["rescale"]),
        lambda_=float(shared["lambda"]),
        generator=generator,
    )
