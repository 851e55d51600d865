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

import hashlib
import json
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.errors import UserError
from aloekit.merge.config import (
    BUILTIN_CHAT_TEMPLATES,
    DTYPES,
    MergeConfig,
    float_or_bool,
    layer_t,
    resolve_parameter,
)

SUPPORTED_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
"""safetensors dtype code -> bytes per element, for the dtypes merging reads and writes."""
_CODE_TO_NAME = {code: name for name, code in DTYPES.items()}

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|embed_in)\.weight$")
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.weight$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


class MergeWarning(UserWarning):
    """Something a merge accepts (as mergekit does) but the user probably did not mean."""


@dataclass(frozen=True)
class TensorSource:
    """Where one input tensor lives: a safetensors file and the key inside it."""

    file: Path
    key: str
    dtype: str
    """safetensors code: F32, F16, BF16 or F64."""
    shape: tuple[int, ...]


@dataclass(frozen=True)
class InputModel:
    """A resolved model: its reference as written, its folder, its config and its tensor index (headers only)."""

    reference: str
    resolved: models.ResolvedModel
    config: dict[str, Any] = field(repr=False)
    tensors: dict[str, TensorSource] = field(repr=False)

    @property
    def path(self) -> Path:
        return self.resolved.path


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


# --- reading models ------------------------------------------------------------------------------------------


def _config_value(cfg: Mapping[str, Any], *keys: str) -> Any:
    text_cfg = cfg.get("text_config") or {}
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
        if isinstance(text_cfg, Mapping) and text_cfg.get(key) is not None:
            return text_cfg[key]
    return None


def _read_config(ref: str, folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"model '{ref}': cannot read {path} ({e}): restore the model's config.json") from e
    if not isinstance(cfg, dict):
        raise UserError(f"model '{ref}': {path} is not a JSON object: restore the model's config.json")
    return cfg


def _header(ref: str, file: Path) -> dict[str, dict[str, Any]]:
    try:
        return models.safetensors_header(file)
    except FileNotFoundError as e:
        raise UserError(f"model '{ref}': weight file {file} is missing: is the download complete?") from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"model '{ref}': {file} is not a readable safetensors file ({e}): re-download it") from e


def read_tensor_index(ref: str, folder: Path) -> dict[str, TensorSource]:
    """Every tensor of a model folder -> where it lives, from the safetensors headers only."""
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"model '{ref}': {index_path} is not a valid index ({e}): re-download the model") from e
        files = sorted(set(weight_map.values()))
    else:
        weight_map = None
        single = folder / "model.safetensors"
        files = [single.name] if single.is_file() else sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"model '{ref}' has no safetensors weights in {folder}: merging reads safetensors only; "
            "convert pickle weights to safetensors first"
        )
    tensors: dict[str, TensorSource] = {}
    for name in files:
        file = folder / name
        for key, meta in _header(ref, file).items():
            if weight_map is not None and weight_map.get(key) != name:
                continue  # the index is authoritative; a stray copy in another shard is ignored
            if key in tensors:
                raise UserError(f"model '{ref}': tensor '{key}' is stored twice ({tensors[key].file.name}, {name})")
            shape = tuple(int(d) for d in meta["shape"])
            tensors[key] = TensorSource(file=file, key=key, dtype=str(meta["dtype"]), shape=shape)
    if weight_map is not None:
        for key, name in weight_map.items():
            if key not in tensors:
                raise UserError(
                    f"model '{ref}': the index puts tensor '{key}' in {name}, which does not hold it: re-download it"
                )
    return tensors


def _template_of(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    try:
        template = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")
    except (OSError, ValueError):
        return None
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --- planning ------------------------------------------------------------------------------------------------


def layer_index(name: str) -> int | None:
    """The layer a tensor belongs to (``model.layers.7.mlp...`` -> 7), or None for embeddings, norms, heads."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def _ties(cfg: Mapping[str, Any], names: Mapping[str, object]) -> bool:
    explicit = _config_value(cfg, "tie_word_embeddings")
    if explicit is not None:
        return bool(explicit)
    return not any(_HEAD.search(n) for n in names)  # no head saved and no word on it: it must be tied


def _order_key(name: str, position: int) -> tuple[int, int, int]:
    layer = layer_index(name)
    if layer is not None:
        return (1, layer, position)
    return (0 if _EMBED.search(name) or "embed" in name else 2, 0, position)


def _resolve_input(ref: str, config: MergeConfig, *, allow_pickle: bool, trust_remote_code: bool) -> InputModel:
    target: str | Path = ref
    src = config.source_path
    if src is not None and not Path(ref).expanduser().exists() and not Path(ref).is_absolute():
        beside = src.parent / ref
        if beside.exists():
            target = beside  # a path written relative to the YAML file
    resolved = models.resolve(target, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    cfg = _read_config(ref, resolved.path)
    return InputModel(reference=ref, resolved=resolved, config=cfg, tensors=read_tensor_index(ref, resolved.path))


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


def _all_params(method: Any) -> set[str]:
    return set(method.model_params) | set(method.global_params)


def _check_input_count(method: str, entries: tuple[int, ...], base: int | None) -> None:
    count = len(entries) + (1 if base is not None and base not in entries else 0)
    if method == "slerp" and count != 2:
        raise UserError(
            f"merge_method slerp interpolates exactly two models (the base and one other), got {count}: "
            "list two models and make one of them base_model"
        )
    if method == "model_stock" and count < 3:
        raise UserError(
            f"merge_method model_stock needs a base_model and at least two other models, got {count} in all: add models"
        )


def _check_compatible(first: InputModel, inputs: list[InputModel]) -> None:
    def arch(m: InputModel) -> tuple[str | None, str | None]:
        archs = m.config.get("architectures") or [None]
        return (archs[0], m.config.get("model_type"))

    for model in inputs:
        if arch(model) != arch(first):
            (a, at), (b, bt) = arch(model), arch(first)
            raise UserError(
                f"model '{model.reference}' is {a} (model_type {at}) but model '{first.reference}' is {b} "
                f"(model_type {bt}): models to merge must share one architecture"
            )
    for model in inputs:
        vocab, ref_vocab = _config_value(model.config, "vocab_size"), _config_value(first.config, "vocab_size")
        if vocab is not None and ref_vocab is not None and vocab != ref_vocab:
            raise _vocab_error(model, vocab, first, ref_vocab)
    for model in inputs:
        if _num_layers(model) != _num_layers(first):
            raise UserError(
                f"model '{model.reference}' has {_num_layers(model)} layers but model '{first.reference}' has "
                f"{_num_layers(first)}: merging needs models of the same size (layer stacking is not supported)"
            )
    for model in inputs:
        for source in model.tensors.values():
            if source.dtype not in SUPPORTED_DTYPES:
                raise UserError(
                    f"model '{model.reference}': tensor '{source.key}' has dtype {source.dtype}, which merging does "
                    f"not support (quantized?): use an unquantized model in float32, float16 or bfloat16"
                )


def _vocab_error(model: InputModel, vocab: object, first: InputModel, ref_vocab: object) -> UserError:
    return UserError(
        f"model '{model.reference}' has a vocabulary of {vocab} tokens but model '{first.reference}' has "
        f"{ref_vocab}: merging models with different vocabularies needs tokenizer merging, which is not supported; "
        "merge models that share one tokenizer"
    )


def _num_layers(model: InputModel) -> int:
    value = _config_value(model.config, "num_hidden_layers", "n_layer", "num_layers")
    if isinstance(value, int) and value > 0:
        return value
    layers = {layer_index(n) for n in model.tensors} - {None}
    return max(layers) + 1 if layers else 1  # type: ignore[operator]


def _check_slices(config: MergeConfig, inputs: list[InputModel], by_ref: dict[str, int]) -> None:
    assert config.slices is not None
    if len(config.slices) != 1:
        raise UserError(
            f"{len(config.slices)} output slices (layer stacking) are not supported yet: use 'models:', or one "
            "slice whose sources each span all layers"
        )
    for source in config.slices[0].sources:
        n = _num_layers(inputs[by_ref[source.model]])
        if tuple(source.layer_range) != (0, n):
            raise UserError(
                f"slice source '{source.model}' takes layer_range {list(source.layer_range)}, but slices that pick "
                f"layer ranges are not supported yet: use [0, {n}] (all its layers) or 'models:'"
            )


def _dominant_dtype(model: InputModel) -> str:
    counts = Counter(s.dtype for s in model.tensors.values())
    return _CODE_TO_NAME[counts.most_common(1)[0][0]]


def _embedding_name(model: InputModel) -> str | None:
    return next((n for n in model.tensors if _EMBED.search(n) and layer_index(n) is None), None)


def _output_names(inputs: list[InputModel], out_tie: bool, notes: list[str], config_source: InputModel) -> list[str]:
    positions: dict[str, int] = {}
    for model in inputs:
        for name in model.tensors:
            positions.setdefault(name, len(positions))
    names = [n for n in positions if not (out_tie and _HEAD.search(n))]
    if out_tie:
        for model in inputs:
            if any(_HEAD.search(n) for n in model.tensors) and not _ties(model.config, model.tensors):
                notes.append(
                    f"model '{model.reference}' has its own lm_head, but the output ties it to the embeddings "
                    f"(config from '{config_source.reference}'): that lm_head is not merged"
                )
    return sorted(names, key=lambda n: _order_key(n, positions[n]))


def _source_for(model: InputModel, name: str, inputs: list[InputModel]) -> TensorSource:
    source = model.tensors.get(name)
    if source is not None:
        return source
    if _HEAD.search(name):
        embedding = _embedding_name(model)
        if _ties(model.config, model.tensors) and embedding is not None:
            return model.tensors[embedding]  # tied: the embedding matrix is this model's lm_head
        if embedding is not None:
            raise UserError(
                f"model '{model.reference}' has no tensor '{name}' and its config.json says "
                "tie_word_embeddings: false: the checkpoint is incomplete; re-download or re-save it"
            )
    holder = next((m for m in inputs if name in m.tensors), None)
    holder_text = f", which model '{holder.reference}' has" if holder is not None else ""
    raise UserError(
        f"model '{model.reference}' has no tensor '{name}'{holder_text}: models to merge must have the same "
        "tensors (same architecture and size)"
    )


def _check_shapes(name: str, inputs: list[InputModel], sources: tuple[TensorSource, ...]) -> None:
    ref_model, ref = inputs[0], sources[0]
    for model, source in zip(inputs, sources, strict=True):
        if source.shape == ref.shape:
            continue
        vocab_tensor = _EMBED.search(name) or _HEAD.search(name)
        if vocab_tensor and source.shape[1:] == ref.shape[1:] and source.shape and ref.shape:
            raise _vocab_error(model, source.shape[0], ref_model, ref.shape[0])
        raise UserError(
            f"tensor '{name}' has shape {list(source.shape)} in model '{model.reference}' but "
            f"{list(ref.shape)} in model '{ref_model.reference}': models to merge must have the same shapes"
        )


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


def _tokenizer_source(
    config: MergeConfig,
    inputs: list[InputModel],
    base: int | None,
    first: InputModel,
    by_ref: dict[str, int],
    allow_pickle: bool,
    trust_remote_code: bool,
) -> InputModel:
    source = config.effective_tokenizer_source
    if source is None:
        return inputs[base] if base is not None else first
    if source == "base":
        if base is None:
            raise UserError("tokenizer_source is 'base' but there is no base_model: add base_model or name a model")
        return inputs[base]
    if source in by_ref:
        return inputs[by_ref[source]]
    model = _resolve_input(source, config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    for other in inputs:
        if other.path == model.path:
            return other
    vocab, ref_vocab = _config_value(model.config, "vocab_size"), _config_value(first.config, "vocab_size")
    if vocab is not None and ref_vocab is not None and vocab != ref_vocab:
        raise _vocab_error(model, vocab, first, ref_vocab)
    return model


def _tokenizer_notes(inputs: list[InputModel], source: InputModel) -> list[str]:
    mine = _file_digest(source.path / "tokenizer.json")
    if mine is None:
        return []
    differ = [m.reference for m in inputs if (d := _file_digest(m.path / "tokenizer.json")) and d != mine]
    if not differ:
        return []
    return [
        f"the tokenizer of {', '.join(repr(r) for r in differ)} differs from '{source.reference}' (whose tokenizer "
        "the output gets) though the vocabulary sizes match: check that the token ids mean the same"
    ]


def _chat_template(config: MergeConfig, inputs: list[InputModel]) -> str | None:
    value = config.chat_template
    if value is None:
        return None
    if value in BUILTIN_CHAT_TEMPLATES:
        return BUILTIN_CHAT_TEMPLATES[value]
    if value == "auto":  # the most common template among the inputs (mergekit's rule); first seen wins a tie
        templates = [t.strip() for m in inputs if (t := _template_of(m.path))]
        return Counter(templates).most_common(1)[0][0] if templates else None
    return value
