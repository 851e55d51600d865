"""Parameter settings of a merge config and how they resolve per tensor, as in mergekit 0.1.5.

A setting is a scalar, a gradient over layer depth, or a list of ``{filter, value}`` rules; see
:mod:`aloekit.merge.config` for the full rules and the scopes a setting falls through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator

# --- parameter settings --------------------------------------------------------------------------------------

Scalar = bool | int | float | str
_SCALARS = (bool, int, float, str)
_SETTING_HELP = (
    "a parameter is a number, true/false, a list of numbers (a gradient over layers) "
    "or a list of {filter: <substring>, value: ...} rules"
)


def _check_scalar_or_gradient(value: object) -> object:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list) and value and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    if isinstance(value, list) and not value:
        raise ValueError("an empty list is not a value: give a number or a list of numbers")
    raise ValueError(_SETTING_HELP)


def _check_setting(value: object) -> object:
    """Validate one parameter setting and return it as plain data (scalars, lists, {filter, value} dicts)."""
    if isinstance(value, Mapping):
        value = [value]  # one rule written without the list (mergekit accepts a lone ConditionalParameter)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        rules = []
        for i, rule in enumerate(value):
            extra = set(rule) - {"filter", "value"}
            if extra:
                raise ValueError(f"rule {i}: unknown key '{sorted(extra)[0]}' (a rule has only filter and value)")
            if "value" not in rule:
                raise ValueError(f"rule {i} has no value: write {{filter: ..., value: ...}}")
            flt = rule.get("filter")
            if flt is not None and not isinstance(flt, str):
                raise ValueError(f"rule {i}: filter must be a substring of tensor names, got {flt!r}")
            rules.append({"filter": flt, "value": _check_scalar_or_gradient(rule["value"])})
        return rules
    return _check_scalar_or_gradient(value)


ParameterSetting = Annotated[Any, BeforeValidator(_check_setting)]
Parameters = dict[str, ParameterSetting]


def evaluate_setting(tensor_name: str, setting: object, t: float, validate: Callable[[object], Any]) -> Any:
    """Resolve one setting for one tensor at depth ``t`` (0 = first layer, 1 = last), as mergekit 0.1.5 does.

    ``validate`` coerces a scalar to the parameter's type (float or bool). Returns None when a list of filter
    rules has no match, so the caller falls through to the next scope.
    """
    if isinstance(setting, Mapping):
        setting = [setting]
    if isinstance(setting, _SCALARS):
        return validate(setting)
    if not isinstance(setting, list) or not setting:
        return None
    if all(isinstance(e, _SCALARS) for e in setting):
        values = [validate(e) for e in setting]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return values[int(t * (len(values) - 1))]  # booleans and words: pick an anchor, never blend
        scaled = t * (len(values) - 1)
        lo = int(scaled)
        hi = min(len(values) - 1, lo + 1)
        frac = scaled - lo
        return validate((1 - frac) * values[lo] + frac * values[hi])
    for rule in setting:
        flt = rule.get("filter")
        if flt is None or flt == "*" or (tensor_name and flt in tensor_name):
            return evaluate_setting(tensor_name, rule["value"], t, validate)
    return None


def resolve_parameter(
    name: str,
    scopes: Sequence[Mapping[str, object] | None],
    *,
    tensor_name: str,
    t: float,
    validate: Callable[[object], Any],
) -> Any:
    """The first scope (highest precedence first) whose setting for ``name`` resolves to a value, else None."""
    for scope in scopes:
        if scope and name in scope:
            value = evaluate_setting(tensor_name, scope[name], t, validate)
            if value is not None:
                return value
    return None


def layer_t(layer: int | None, num_layers: int) -> float:
    """Depth of a tensor in a gradient, mergekit 0.1.5's rule.

    Layer ``i`` of ``N`` sits at ``i / (N - 1)`` (a one-layer model at 1). Tensors outside the layers (embeddings,
    the final norm, ``lm_head``) are planned at ``t = 0`` in mergekit 0.1.5: both its pre- and post-layer weights
    use the module's ConfigReader, created with ``t=0`` (older mergekit put post-layer weights at 1).
    """
    if layer is None:
        return 0.0
    return layer / (num_layers - 1) if num_layers > 1 else 1.0


def float_or_bool(kind: type) -> Callable[[object], Any]:
    """The scalar validator for a parameter of type ``kind`` (pydantic's lax coercion, as mergekit uses)."""

    def validate(value: object) -> Any:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in (
                "true",
                "yes",
                "on",
                "1",
                "false",
                "no",
                "off",
                "0",
            ):
                return value.strip().lower() in ("true", "yes", "on", "1")
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            raise ValueError(f"{value!r} is not true/false")
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int | float):
            result = float(value)
        else:
            try:
                result = float(str(value))  # YAML reads 1e-3 (no dot) as a string; mergekit coerces it too
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(result):
            raise ValueError(f"{value!r} is not a finite number")
        return result

    return validate
