"""A trained model as a standalone folder anyone can load with plain transformers.

``OUT/model`` holds the full weights (LoRA adapters merged in with peft's ``merge_and_unload``) as safetensors,
the tokenizer with its chat template, the generation config (with the end-of-turn token as a stop token) and a
model card ``README.md`` whose YAML header the Hugging Face Hub reads (base_model, library_name, tags,
datasets). The folder is written to a temporary sibling and renamed into place, so a killed export never leaves a
folder that looks finished; pickle weights are never written.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from aloekit.models import PICKLE_SUFFIXES, make_readable, replace_folder

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


def model_card(
    *,
    title: str,
    base_model: str,
    datasets: Sequence[str],
    config: Mapping[str, Any],
    results: Mapping[str, Any],
    lora: bool,
    description: str,
) -> str:
    """README.md text: Hub metadata as YAML front matter, then what was trained, how, and how it scored."""
    meta: dict[str, Any] = {
        "base_model": base_model,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "aloekit", "trl", "sft", *(["lora"] if lora else [])],
    }
    if datasets:
        meta["datasets"] = list(datasets)
    rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in _flatten(config))
    result_rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in results.items())
    return (
        f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n"
        f"# {title}\n\n"
        f"{description}\n\n"
        f"Fine-tuned from `{base_model}` with aloekit's supervised fine-tuning stage (the Aloe recipe): "
        f"{'LoRA adapters, merged into the weights' if lora else 'full fine-tuning'}, loss on the assistant's "
        "tokens only (end-of-turn token included), packed sequences without attention across examples.\n\n"
        "## Results\n\n| metric | value |\n|---|---|\n"
        f"{result_rows}\n\n"
        "## Training configuration\n\n| setting | value |\n|---|---|\n"
        f"{rows}\n\n"
        "## Use\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("PATH")\ntokenizer = AutoTokenizer.from_pretrained("PATH")\n'
        'messages = [{"role": "user", "content": "What are the symptoms of anaemia?"}]\n'
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt', "
        "return_dict=True)\n"
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=128)[0]))\n```\n\n"
        "## Limitations\n\nA research model: it is not a medical device and must not be used for diagnosis or "
        "treatment decisions without a qualified professional. Check it with `aloe eval` and the safety "
        "evaluations before any use.\n"
    )


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|")


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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
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
        make_readable(tmp)
        replace_folder(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
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
