"""Resolving a merge method's parameters for one tensor, with mergekit 0.1.5's scoping rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aloekit.errors import UserError
from aloekit.merge.config import MergeConfig
from aloekit.merge.settings import resolve_parameter


def _all_params(method: Any) -> set[str]:
    return set(method.model_params) | set(method.global_params)


def _model_params(
    method: Any,
    scopes: tuple[Mapping[str, Any] | None, ...],
    tensor: str,
    t: float,
    validators: Mapping[str, Any],
    *,
    model: str | None,
    skip: bool,
) -> dict[str, float | bool]:
    """A model's per-model parameters for one tensor.

    ``skip``: this is the base listed among the models; methods that need a base ignore its parameters (mergekit
    does not even resolve them), so missing ones are not an error there. ``linear`` merges the base like any
    other model and needs its weight.
    """
    optional = skip and method.needs_base
    values: dict[str, float | bool] = {}
    for p in sorted(method.model_params):
        value = _param(p, scopes, tensor, t, validators[p], method, model=model, optional=optional)
        if value is not None:
            values[p] = value
    return values


def _param(
    name: str,
    scopes: tuple[Mapping[str, Any] | None, ...],
    tensor: str,
    t: float,
    validate: Any,
    method: Any,
    *,
    model: str | None,
    optional: bool = False,
) -> Any:
    try:
        value = resolve_parameter(name, scopes, tensor_name=tensor, t=t, validate=validate)
    except ValueError as e:
        owner = f"model '{model}'" if model else "parameters"
        raise UserError(f"{owner}: parameter '{name}' for tensor '{tensor}': {e}: fix its value") from e
    if value is not None:
        return value
    default = method.defaults.get(name)
    if default is not None:
        return default
    if optional:
        return None
    if model is None:
        raise UserError(
            f"merge_method {method.name} needs parameter '{name}' (for tensor '{tensor}'): add it under 'parameters:'"
        )
    who = "every model but the base" if method.needs_base else "every model, base_model included"
    raise UserError(
        f"model '{model}' has no '{name}' for tensor '{tensor}' (merge_method {method.name} needs it for {who}): "
        "add it under the model's parameters or the top-level parameters"
    )


def _parameter_notes(config: MergeConfig, method: Any) -> list[str]:
    notes = []
    known = _all_params(method)
    scopes: list[tuple[str, Mapping[str, Any] | None, bool]] = [("parameters", config.parameters, False)]
    scopes.append(("slice parameters", config.slice_parameters, False))
    scopes += [(f"model '{ref}'", params, True) for ref, params in config.entries]
    for where, params, per_model in scopes:
        for key in params or {}:
            if key not in known:
                notes.append(f"{where}: parameter '{key}' is not used by merge_method {method.name}; it is ignored")
            elif per_model and key not in method.model_params:
                notes.append(
                    f"{where}: '{key}' is a method-level parameter of {method.name}; set under a model it is "
                    "ignored (as mergekit does): move it to the top-level parameters"
                )
    return notes
