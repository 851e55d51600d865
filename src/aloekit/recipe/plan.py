"""``aloe run --dry-run``: what the run would do, checked as far as it can be without data, models or GPUs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aloekit.config import EngineConfig
from aloekit.data.prefs_build import PrefsConfig
from aloekit.errors import UserError
from aloekit.merge.config import MergeConfig
from aloekit.recipe.config import RecipeConfig, merge_config
from aloekit.recipe.stages.dpo import dpo_config
from aloekit.recipe.stages.sft import letters_config, sft_config

__all__ = ["dry_run", "training_length"]


def dry_run(recipe: RecipeConfig, folder: Path) -> list[dict[str, Any]]:
    """What ``aloe run`` would do, checked as far as it can be without data, models or GPUs: every stage's full
    config is built and validated (with the paths the run would use), accelerate configs are read, and the
    training commands are spelled out. Returns one row per stage."""
    rows: list[dict[str, Any]] = []
    data = folder / "data"
    rows.append(
        {
            "stage": "data",
            "does": f"holdout of {len(recipe.data.holdout)} files, "
            * bool(recipe.data.holdout)
            + f"SFT mixture of {len(recipe.data.mixture.sources)} sources, preference pairs (general: "
            f"{_pref_parts(recipe.data.prefs_general)}"
            + " (on-policy: built by the dpo stage)" * recipe.data.general_on_policy
            + f"; safety: {_pref_parts(recipe.data.prefs_safety)})"
            + (", Medprompt CoT database" if recipe.data.cot_db else ""),
            "data_dir": str(recipe.data_dir) if recipe.data_dir else "files named in the recipe, else the Hub",
        }
    )
    sft = sft_config(recipe, str(data / "sft"), folder / "sft" / "train")
    general = (folder / "dpo" if recipe.data.general_on_policy else data) / "prefs_general"
    dpo = dpo_config(recipe, str(folder / "merge" / "model"), str(general), str(data / "prefs_safety"), folder)
    for name, config in (("sft", sft), ("dpo", dpo)):
        row: dict[str, Any] = {"stage": name, "model": config.model}
        if recipe.launcher.accelerate_config is not None:
            row["launch"] = _accelerate_summary(recipe) + f" -m aloekit.cli train {name} {folder / name / name}.yaml"
        else:
            row["launch"] = "in this process"
        processes = recipe.launcher.num_processes or 1
        if name == "sft":
            per_step = sft.per_device_batch_size * sft.gradient_accumulation * processes
            # Packed rows are known only after tokenizing: the count of conversations would overstate epochs.
            built = None if sft.packing else _rows(data / "sft" / "train.jsonl")
            length = training_length(sft.epochs, sft.max_steps, per_step, built)
            row["does"] = (
                f"{'LoRA' if sft.lora else 'full'} fine-tuning, {length}, lr {sft.learning_rate}, "
                f"max_length {sft.max_length}, packing {sft.packing}"
            )
            if recipe.letters is not None:
                phase = letters_config(recipe, str(data / "letters"), sft.out / "model", folder / "sft" / "letters")
                steps = training_length(
                    phase.epochs,
                    phase.max_steps,
                    phase.per_device_batch_size * phase.gradient_accumulation * processes,
                    None if phase.packing else _rows(data / "letters" / "train.jsonl"),
                )
                row["does"] += f"; then a letter phase on data.letters, {steps}, lr {phase.learning_rate}"
        else:
            per_step = dpo.per_device_batch_size * dpo.gradient_accumulation * processes
            row["does"] = ", ".join(
                f"{s.name}: beta {s.beta}, lr {s.learning_rate}, "
                + training_length(s.epochs, s.max_steps, per_step, _rows(data / f"prefs_{s.name}" / "train.jsonl"))
                for s in dpo.stages
            )
        rows.append(row)
    spec = merge_config(recipe.merge, base=recipe.models.base, instruct=recipe.instruct, sft=sft.out.as_posix())
    merge = MergeConfig.model_validate(spec)
    rows.insert(2, {"stage": "merge", "does": f"{merge.merge_method} of {len(merge.models or [])} models"})

    def how(generation: EngineConfig | None) -> str:
        return recipe.engine.backend + (f", generation on {generation.backend}" if generation is not None else "")

    rows.append(
        {
            "stage": "eval",
            "does": f"log-likelihood on {', '.join(recipe.eval.benchmarks)} for {', '.join(recipe.eval.models)}"
            + (f"; Medprompt on {recipe.eval.medprompt.model}" if recipe.eval.medprompt.enabled else ""),
            "engine": how(recipe.eval.medprompt.generation_engine if recipe.eval.medprompt.enabled else None),
        }
    )
    rows.append(
        {
            "stage": "safety",
            "does": f"{', '.join(recipe.safety.suites)} x {len(recipe.safety.styles)} styles on "
            f"{', '.join(recipe.safety.models)}, judge {recipe.safety.judge}",
            "engine": how(recipe.safety.generation_engine),
        }
    )
    rows.append({"stage": "report", "does": f"{folder / 'report' / 'report.html'} and the model card"})
    return rows


def _rows(path: Path) -> int | None:
    """Rows of a built JSONL file, or None before the data stage has built it."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def training_length(epochs: float, max_steps: int | None, per_step: int, rows: int | None) -> str:
    """How long a training stage runs, as the trainer will: ``max_steps`` overrides ``epochs``, so with it set the
    epochs covered are steps x rows per step / rows (``0.67 epochs``), never the ignored setting (``1.0``)."""
    if max_steps is None:
        return f"{epochs:g} epochs"
    steps = f"{max_steps} steps of {per_step} rows"
    if rows:
        return f"{steps} = {max_steps * per_step / rows:.2f} epochs of {rows} rows"
    return f"{steps} (the epochs setting is ignored; epochs covered: known once the data is built and packed)"


def _pref_parts(config: PrefsConfig) -> str:
    parts = [k for k in ("medical", "letters", "redteam", "benign", "reference") if getattr(config, k) is not None]
    return "+".join(parts + ["pairs"] * bool(config.pairs)) or "none"


def _accelerate_summary(recipe: RecipeConfig) -> str:
    """The accelerate launch command, after checking its config file reads as YAML with a distributed type."""
    path = recipe.launcher.accelerate_config
    assert path is not None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"launcher.accelerate_config {path}: cannot read it as YAML ({e})") from e
    if not isinstance(config, dict) or "distributed_type" not in config:
        raise UserError(f"launcher.accelerate_config {path}: not an accelerate config (no distributed_type)")
    processes = recipe.launcher.num_processes or config.get("num_processes")
    argv: Sequence[str] = ["accelerate", "launch", "--config_file", str(path)]
    if processes:
        argv = [*argv, "--num_processes", str(processes)]
    return f"[{config['distributed_type']}] " + shlex.join(argv)
