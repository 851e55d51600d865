"""Resolving and validating a method's parameters, as mergekit's pydantic types and defaults do."""

from __future__ import annotations

import math
from collections.abc import Mapping

from aloekit.errors import UserError
from aloekit.merge.methods.registry import _BOOL_PARAMS, Method

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
