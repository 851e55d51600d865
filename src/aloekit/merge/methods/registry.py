"""The merge-method registry: what each method reads, with mergekit 0.1.5's defaults.

See :mod:`aloekit.merge.methods` for the conventions all methods share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch

COMPUTE_DTYPE = torch.float32


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
