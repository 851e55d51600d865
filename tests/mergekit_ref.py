"""Reference merges computed by mergekit 0.1.5 itself, for the parity tests in ``test_merge_methods.py``.

Run INSIDE the mergekit venv, never the aloekit one (mergekit is LGPL and is not a dependency of aloekit)::

    .venv-mergekit/bin/python tests/mergekit_ref.py CASES.pt RESULTS.pt

``CASES.pt`` is a ``torch.save``'d list of cases. A case is a dict, either

* a merge, as a one-tensor mergekit YAML config would describe it::

      {"method": "ties",
       "models": [{"name": "m0", "tensor": T0, "parameters": {"weight": 1.0, "density": 0.5}}, ...],
       "base": {"name": "base", "tensor": TB} or None,   # name == a models[i]["name"] when listed there
       "parameters": {"normalize": True, ...},           # the config's merge-level ``parameters:``
       "seed": 1234 or None}                             # torch.manual_seed before the merge (DARE/DELLA)

* or a direct call of mergekit's TIES sign-consensus helper (``count`` is not reachable from a 0.1.5 config)::

      {"function": "get_mask", "deltas": D, "consensus": "count", "int8_mask": False}

* or a look at a registered method's declared parameters (scope and default, ``"REQUIRED"`` when it has none)
  and whether its input contract requires a base::

      {"function": "spec", "method": "ties"}

``RESULTS.pt`` receives a list, one entry per case: the result tensor, or ``{"error": "Type: message"}``.

How mergekit is driven, so that the reference is what ``mergekit-yaml`` would compute for one tensor:

1. The config is validated as a ``mergekit.config.MergeConfiguration`` (``models:`` syntax).
2. Its models become the sources of one output slice exactly as ``MergePlanner.normalize_config`` does in
   ``mergekit/plan.py``: the YAML models in order, then the ``base_model`` appended (without parameters) when it
   is not listed among them. (The planner itself needs a real architecture and model configs; this step is the
   only thing re-stated here.)
3. Parameters are resolved by mergekit's own ``parameter_resolver.resolve_parameters`` against a
   ``ConfigReader`` over that slice: per-model settings, then the merge-level ones, then the method's defaults;
   a missing required parameter raises there, and the base's non-base-scoped parameters are skipped there.
4. The merge runs through ``merge_methods.task_adapter.ExecuteMergeMethodTask.execute``, the graph adapter
   ``mergekit-yaml`` executes per tensor, which builds the ``TensorGroup`` (with ``is_base``), validates the
   input contract and calls the registered method (``GeneralizedTaskArithmeticMerge``, the ``linear``/``slerp``
   batch kernels, ``model_stock``).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from mergekit import merge_methods
from mergekit.architecture import WeightInfo
from mergekit.common import ImmutableMap, ModelReference
from mergekit.config import ConfigReader, InputSliceDefinition, MergeConfiguration, OutputSliceDefinition
from mergekit.merge_methods.base import BasePolicy
from mergekit.merge_methods.generalized_task_arithmetic import get_mask
from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask, TensorDictWrapper
from mergekit.parameter_resolver import resolve_parameters

TENSOR_NAME = "model.layers.0.mlp.down_proj.weight"


def run_merge(case: dict[str, Any]) -> torch.Tensor | None:
    base = case.get("base")
    config = MergeConfiguration.model_validate(
        {
            "merge_method": case["method"],
            "base_model": base["name"] if base else None,
            "models": [{"model": m["name"], "parameters": m.get("parameters") or None} for m in case["models"]],
            "parameters": case.get("parameters") or None,
        }
    )
    tensors = {ModelReference.model_validate(m["name"]): m["tensor"] for m in case["models"]}

    # plan.py, MergePlanner.normalize_config: models -> one slice; the base is appended when not listed.
    sources = [InputSliceDefinition(model=m.model, layer_range=(0, 1), parameters=m.parameters) for m in config.models]
    if config.base_model is not None and all(m.model != config.base_model for m in config.models):
        sources.append(InputSliceDefinition(model=config.base_model, layer_range=(0, 1)))
        tensors[config.base_model] = base["tensor"]
    out_slice = OutputSliceDefinition(sources=sources)
    model_order = [s.model for s in sources]

    method = merge_methods.get(config.merge_method)
    method.validate_inputs(model_order, config.base_model, group_name="slices[0]")
    reader = ConfigReader(config=config, slice_out=out_slice, t=0)
    shared, per_input = resolve_parameters(
        method.spec,
        tensor_name=TENSOR_NAME,
        inputs={model: TENSOR_NAME for model in model_order},
        sources=reader.parameter_sources,
        base_model=config.base_model,
        t=0,
    )
    task = ExecuteMergeMethodTask(
        method_name=method.spec.name,
        gather_tensors=TensorDictWrapper(tensors=ImmutableMap(data={})),
        model_order=tuple(model_order),
        base_model=config.base_model,
        output_weight=WeightInfo(name=TENSOR_NAME),
        parameters=ImmutableMap(data=shared),
        input_parameters=ImmutableMap(data={model: ImmutableMap(data=p) for model, p in per_input.items()}),
    )
    if case.get("seed") is not None:
        torch.manual_seed(case["seed"])
    return task.execute(tensors=tensors)


def method_spec(name: str) -> dict[str, Any]:
    spec = merge_methods.get(name).spec
    return {
        "needs_base": spec.contract.base == BasePolicy.REQUIRED,
        "params": {
            p.name: {"scope": p.scope.value, "default": "REQUIRED" if p.required else p.default}
            for p in spec.parameters
        },
    }


def run_case(case: dict[str, Any]) -> Any:
    try:
        if case.get("function") == "get_mask":
            dtype = torch.int8 if case.get("int8_mask") else None
            return get_mask(case["deltas"], method=case["consensus"], mask_dtype=dtype)
        if case.get("function") == "spec":
            return method_spec(case["method"])
        return run_merge(case)
    except Exception as error:  # the tests compare error cases, so report every failure as data
        return {"error": f"{type(error).__name__}: {error}"}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: mergekit_ref.py CASES.pt RESULTS.pt", file=sys.stderr)
        return 2
    cases = torch.load(argv[1], weights_only=True)
    with torch.no_grad():
        results = [run_case(case) for case in cases]
    torch.save(results, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
