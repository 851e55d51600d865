"""Reading a merge's input models from their folders: config.json, safetensors headers and tokenizer files;
no tensor is read."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.errors import UserError
from aloekit.merge.config import DTYPES, MergeConfig

SUPPORTED_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
"""safetensors dtype code -> bytes per element, for the dtypes merging reads and writes."""
_CODE_TO_NAME = {code: name for name, code in DTYPES.items()}


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


def _header(ref: str, file: Path) -> dict[str, models.TensorHeader]:
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


def _dominant_dtype(model: InputModel) -> str:
    counts = Counter(s.dtype for s in model.tensors.values())
    return _CODE_TO_NAME[counts.most_common(1)[0][0]]
