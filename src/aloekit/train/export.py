"""A trained model as a standalone folder anyone can load with plain transformers.

``OUT/model`` holds the full weights (LoRA adapters merged in with peft's ``merge_and_unload``) as safetensors,
the tokenizer with its chat template, the generation config (with the end-of-turn token as a stop token) and a
model card ``README.md`` whose YAML header the Hugging Face Hub reads (base_model, library_name, tags,
datasets). The folder is written to a temporary sibling and renamed into place, so a killed export never leaves a
folder that looks finished; pickle weights are never written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aloekit.io import atomic_folder
from aloekit.models import PICKLE_SUFFIXES

# Hub ids of the models aloekit ships under an alias, so a model card can name its base model on the Hub.
HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def merged_model(model: Any) -> Any:
    """The plain transformers model: a peft model with its LoRA adapters merged into the base weights."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def base_model_id(reference: str) -> str:
    """The base model's name as the Hub knows it: an alias's Hub id, a Hub id as given, else the folder's name."""
    from aloekit.models import ALIASES

    if reference in HUB_IDS:
        return HUB_IDS[reference]
    path = Path(reference)
    if path.is_dir() and (path / "aloe_source.json").is_file():  # a GGUF converted by aloekit: name the GGUF
        try:
            gguf = Path(json.loads((path / "aloe_source.json").read_text())["gguf"]).name
        except (OSError, ValueError, KeyError):
            gguf = ""
        alias = next((name for name, a in ALIASES.items() if a.filename == gguf), None)
        if alias in HUB_IDS:
            return HUB_IDS[alias]
        if gguf:
            return gguf
    if path.exists():
        return path.resolve().name
    return reference.partition("@")[0]


def export_model(
    model: Any,
    tokenizer: Any,
    target: Path,
    *,
    base_path: Path,
    card: str,
    dtype: Any = None,
) -> Path:
    """Write ``model`` (adapters merged) with ``tokenizer`` and ``card`` as a standalone folder at ``target``.

    ``base_path`` is the base model's folder (its generation config is kept); ``dtype`` casts the weights (the
    base model's own dtype, so a bf16 base is exported in bf16 whatever precision training used).
    """
    from transformers import GenerationConfig

    model = merged_model(model)
    if dtype is not None:
        model = model.to(dtype)
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            generation = GenerationConfig.from_pretrained(base_path)
        except (OSError, ValueError):
            generation = GenerationConfig.from_model_config(model.config)
        stops = _as_list(generation.eos_token_id)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
            stops.append(tokenizer.eos_token_id)
        generation.eos_token_id = stops[0] if len(stops) == 1 else stops
        if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
            generation.pad_token_id = tokenizer.pad_token_id
        generation.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        pickles = [p.name for p in tmp.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:  # transformers 5 writes safetensors only; refuse rather than ship a pickle by surprise
            raise RuntimeError(f"export wrote pickle files {pickles}")
        _check_loadable(tmp)
    return target


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def _check_loadable(folder: Path) -> None:
    """The files plain transformers needs are there: config, safetensors weights, tokenizer, chat template."""
    names = {p.name for p in folder.iterdir()}
    missing = [n for n in ("config.json", "generation_config.json", "tokenizer_config.json") if n not in names]
    if not any(n.endswith(".safetensors") for n in names):
        missing.append("*.safetensors")
    config = json.loads((folder / "config.json").read_text())
    if "auto_map" in config:
        missing.append("(no custom code: config.json has auto_map)")
    if missing:
        raise RuntimeError(f"exported folder {folder} lacks {', '.join(missing)}")
