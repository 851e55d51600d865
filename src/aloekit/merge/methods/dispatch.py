"""The entry point: merge one tensor with a named method (:func:`merge_tensor`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from aloekit.errors import UserError
from aloekit.merge.methods.linear import linear
from aloekit.merge.methods.model_stock import model_stock
from aloekit.merge.methods.params import _check_density, _resolve
from aloekit.merge.methods.registry import _TASK_ARITHMETIC, METHODS
from aloekit.merge.methods.slerp import slerp
from aloekit.merge.methods.task_arithmetic import task_arithmetic_family

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
