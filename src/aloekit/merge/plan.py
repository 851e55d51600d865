"""Plan a merge from safetensors headers alone: validate every input, then list one job per output tensor.

Nothing here reads a tensor. :func:`plan` resolves each model reference, reads ``config.json`` and the JSON headers
of the weight files (single file or sharded with ``model.safetensors.index.json``), and refuses, with one line
naming the model and the tensor, anything that would fail or silently go wrong later: different architectures,
different vocabularies (tokenizer merging is not supported), missing or extra tensors, different shapes,
non-float weights, a method that needs a base model without one, a missing required parameter. Only then is
anything written.

Each :class:`TensorJob` records where every input's tensor lives (file and key: a model with tied embeddings
lends its embedding matrix as its ``lm_head``), the parameters resolved for that tensor (mergekit 0.1.5's rules,
see :mod:`aloekit.merge.config`) and where the result goes in the output shards, so execution can stream tensors
straight to disk.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from aloekit.errors import UserError
from aloekit.merge.checks import _check_compatible, _check_input_count, _check_shapes, _check_slices, _num_layers
from aloekit.merge.config import DTYPES, MergeConfig
from aloekit.merge.inputs import SUPPORTED_DTYPES, InputModel, TensorSource, _dominant_dtype, _resolve_input
from aloekit.merge.layout import _output_names, _source_for, _ties, layer_index
from aloekit.merge.parameters import _all_params, _model_params, _param, _parameter_notes
from aloekit.merge.settings import float_or_bool, layer_t
from aloekit.merge.tokenizer import _chat_template, _tokenizer_notes, _tokenizer_source


class MergeWarning(UserWarning):
    """Something a merge accepts (as mergekit does) but the user probably did not mean."""


@dataclass(frozen=True)
class TensorJob:
    """One output tensor: its inputs, its resolved parameters and its place in the output."""

    name: str
    shape: tuple[int, ...]
    layer: int | None
    """Layer index parsed from the name (``model.layers.7.`` -> 7); None outside the layers."""
    t: float
    """Depth used for gradients: layer / (N - 1); 0 outside the layers (mergekit 0.1.5)."""
    sources: tuple[TensorSource, ...]
    """One per :attr:`MergePlan.inputs`."""
    model_params: tuple[dict[str, float | bool], ...]
    """One per YAML model entry (:attr:`MergePlan.entries`), in order."""
    global_params: dict[str, float | bool]
    shard: int
    offset: int
    """Byte offset of this tensor inside its shard's data section."""
    nbytes: int


@dataclass(frozen=True)
class Shard:
    name: str
    jobs: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class MergePlan:
    """Everything a merge needs, validated: inputs, per-tensor jobs and the output layout."""

    config: MergeConfig
    method: str
    random: bool
    inputs: tuple[InputModel, ...]
    """Distinct models read, YAML models first, then the base if it is not listed."""
    entries: tuple[int, ...]
    """For each YAML model entry: its index in :attr:`inputs`."""
    base: int | None
    """Index of the base model in :attr:`inputs`."""
    base_index: int | None
    """Position of the base model among the YAML entries, if it is listed there too."""
    jobs: tuple[TensorJob, ...]
    shards: tuple[Shard, ...]
    out_dtype: str
    """Output precision (torch name, e.g. bfloat16)."""
    compute_dtype: str | None
    """``dtype:`` of the config: inputs are rounded to it before merging (mergekit reads them in it)."""
    config_source: InputModel
    """Whose config.json and generation_config.json the output gets (the base, else the first model)."""
    tokenizer_source: InputModel
    chat_template: str | None
    """Template text to write, or None to keep the tokenizer source's."""
    tied_embeddings: bool
    warnings: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self.shards)


def plan(
    config: MergeConfig,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    shard_size: int | None = None,
) -> MergePlan:
    """Validate ``config`` against its models' headers and list the per-tensor jobs; reads no tensor.

    Raises :class:`UserError` (one line, naming the model and the tensor) for anything that cannot be merged.
    ``shard_size`` (bytes) overrides ``aloekit.shard_size``.
    """
    from aloekit.merge.methods import METHODS

    method = METHODS[config.merge_method]
    notes: list[str] = []
    entries_cfg = config.entries
    base_ref = config.effective_base

    if method.needs_base and base_ref is None:
        raise UserError(
            f"merge_method {method.name} needs a base_model (the model task vectors are taken against): "
            "add 'base_model: <model>'"
        )

    # Resolve each distinct model once (two references to one folder are one input).
    inputs: list[InputModel] = []
    by_ref: dict[str, int] = {}
    by_path: dict[Path, int] = {}

    def add(ref: str) -> int:
        if ref in by_ref:
            return by_ref[ref]
        model = _resolve_input(ref, config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        index = by_path.get(model.path)
        if index is None:
            index = len(inputs)
            inputs.append(model)
            by_path[model.path] = index
        by_ref[ref] = index
        return index

    entries = tuple(add(ref) for ref, _ in entries_cfg)
    base = add(base_ref) if base_ref is not None else None
    base_index = entries.index(base) if base is not None and base in entries else None
    _check_input_count(method.name, entries, base)

    first = inputs[entries[0]]
    _check_compatible(first, inputs)
    num_layers = _num_layers(first)
    if config.slices:
        _check_slices(config, inputs, by_ref)

    config_source = inputs[base] if base is not None else first
    out_tie = _ties(config_source.config, config_source.tensors)
    names = _output_names(inputs, out_tie, notes, config_source)
    compute_dtype = config.dtype
    out_dtype = config.out_dtype or config.dtype or _dominant_dtype(config_source)
    elem = SUPPORTED_DTYPES[DTYPES[out_dtype]]
    size_limit = shard_size or config.aloekit.shard_size

    kinds = {p: bool if isinstance(method.defaults.get(p), bool) else float for p in _all_params(method)}
    validators = {p: float_or_bool(kind) for p, kind in kinds.items()}
    notes += _parameter_notes(config, method)
    slice_params = config.slice_parameters
    global_scopes = (slice_params, config.parameters)
    model_scopes = [(params, slice_params, config.parameters) for _, params in entries_cfg]

    jobs: list[TensorJob] = []
    shard_jobs: list[list[int]] = [[]]
    shard_bytes = [0]
    for name in names:
        sources = tuple(_source_for(model, name, inputs) for model in inputs)
        _check_shapes(name, inputs, sources)
        layer = layer_index(name)
        t = layer_t(layer, num_layers)
        global_params = {
            p: _param(p, global_scopes, name, t, validators[p], method, model=None)
            for p in sorted(method.global_params)
        }
        per_model = [
            _model_params(method, scopes, name, t, validators, model=entries_cfg[j][0], skip=j == base_index)
            for j, scopes in enumerate(model_scopes)
        ]
        if base is not None and base_index is None and not method.needs_base:
            # mergekit appends an unlisted base as one more input, with no parameters of its own: a method that
            # merges it (linear) reads its weight from the slice or top-level parameters, and requires it.
            base_scopes = (None, slice_params, config.parameters)
            base_params = _model_params(method, base_scopes, name, t, validators, model=base_ref, skip=False)
            global_params |= base_params
        shape = sources[0].shape
        nbytes = elem
        for d in shape:
            nbytes *= d
        if shard_jobs[-1] and shard_bytes[-1] + nbytes > size_limit:
            shard_jobs.append([])
            shard_bytes.append(0)
        jobs.append(
            TensorJob(
                name=name,
                shape=shape,
                layer=layer,
                t=t,
                sources=sources,
                model_params=tuple(per_model),
                global_params=global_params,
                shard=len(shard_jobs) - 1,
                offset=shard_bytes[-1],
                nbytes=nbytes,
            )
        )
        shard_jobs[-1].append(len(jobs) - 1)
        shard_bytes[-1] += nbytes

    count = len(shard_jobs)
    shard_names = (
        ["model.safetensors"] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    )
    shards = tuple(Shard(n, tuple(j), b) for n, j, b in zip(shard_names, shard_jobs, shard_bytes, strict=True))
    tokenizer_source = _tokenizer_source(config, inputs, base, first, by_ref, allow_pickle, trust_remote_code)
    notes += _tokenizer_notes(inputs, tokenizer_source)
    for note in notes:
        warnings.warn(note, MergeWarning, stacklevel=2)
    return MergePlan(
        config=config,
        method=method.name,
        random=method.random,
        inputs=tuple(inputs),
        entries=entries,
        base=base,
        base_index=base_index,
        jobs=tuple(jobs),
        shards=shards,
        out_dtype=out_dtype,
        compute_dtype=compute_dtype,
        config_source=config_source,
        tokenizer_source=tokenizer_source,
        chat_template=_chat_template(config, inputs),
        tied_embeddings=out_tie,
        warnings=tuple(notes),
    )
