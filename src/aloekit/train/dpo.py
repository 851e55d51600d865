"""``aloe train dpo``: Direct Preference Optimization in stages on TRL's DPOTrainer, as the Aloe recipe aligns a
model (general and medical preferences first, then red-teaming).

Stages chain: stage k trains from the model stage k-1 produced, and that same model is stage k's frozen
reference. After each stage the policy (LoRA merged in, when LoRA is used) is saved as ``OUT/<stage>/model``;
the first stage starts from ``model``.

The reference's log-probabilities are computed once per (pairs, tokenization, reference weights) and kept on
disk (:mod:`aloekit.train.refcache`); TRL's ``precompute_ref_log_probs`` mode then trains without a reference
model in memory and without a reference forward per step (with LoRA, no adapter-disabled forward either). A
resumed or repeated stage finds the cache and runs no reference forward at all.

Layout of ``OUT``::

    config.yaml              the config as run (every default filled in)
    manifest.json            versions, seed, per-stage status, dataset and model fingerprints, the final model
    model -> <last>/model    the final model (a relative link; manifest.json's ``final_model`` names it too)
    <stage>/checkpoints/     Trainer checkpoints; ``--resume`` continues from the last one
    <stage>/runs/            TensorBoard event files (loss, rewards/margins, rewards/accuracies, logps/*...)
    <stage>/model/           the stage's result: the next stage's policy and reference
    <stage>/metrics.json     every logged step, first/last summaries, evaluation on the validation pairs
    <stage>/manifest.json    the stage's status, inputs, fingerprints and reference-cache keys

``--resume`` skips the stages whose manifest says ``done`` (with the same settings and inputs) and resumes the
current one from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from aloekit import models
from aloekit.config import _Config, load_yaml
from aloekit.errors import UserError
from aloekit.train import refcache
from aloekit.train.common import (
    Logging,
    LoraSettings,
    Precision,
    abandoned,
    check_versions,
    device_kind,
    precision_args,
    run_owner,
    score_trained_positions_only,
)
from aloekit.train.export import base_model_id, export_model
from aloekit.train.packing import grouped_order

LossType = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]
"""TRL 1.16's DPO losses (``exo_pair`` is left out: it needs label smoothing, which aloekit does not expose)."""

_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = ("model", "config.yaml", "manifest.json")
_VERSIONED = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


class DPOStage(_Config):
    """One DPO stage: a set of preference pairs and how hard to pull the policy towards them."""

    name: str = Field(description="Folder name of the stage under OUT (letters, digits, '.', '_', '-').")
    dataset: Path = Field(
        description="Preference pairs: a data-stage folder (train.jsonl, optional validation.jsonl) or one JSONL "
        "file of pairs (prompt, chosen, rejected; TRL's conversational layout or plain strings)."
    )
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference.")
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate (cosine schedule after warmup).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training pairs (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; overrides epochs.")
    loss_type: tuple[LossType, ...] = Field(
        ("sigmoid",), description="TRL loss name (sigmoid = DPO, ipo, hinge, ...), or a list to combine several."
    )
    max_length: int = Field(
        1024,
        ge=8,
        description="Most tokens of prompt + reply; longer sequences are cut at the end, and pairs whose prompt "
        "alone fills it are dropped (TRL's keep_start truncation).",
    )

    @field_validator("loss_type", mode="before")
    @classmethod
    def _one_loss(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not _STAGE_NAME.match(value) or value in _RESERVED:
            raise ValueError(
                f"stage name {value!r} must be a plain folder name (letters, digits, '.', '_', '-'), not "
                f"{', '.join(_RESERVED)}"
            )
        return value

    @field_validator("loss_type")
    @classmethod
    def _some_loss(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one loss (e.g. sigmoid)")
        return value


class DPORunConfig(_Config):
    """``aloe train dpo CONFIG``: the policy to start from and the DPO stages to run on it, in order."""

    model: str = Field(description="The policy to start from: alias, folder, .gguf file or Hub id (an SFT result).")
    out: Path = Field(description="Output folder (see the layout in aloekit.train.dpo).")
    stages: tuple[DPOStage, ...] = Field(
        description="Stages in order; each starts from the previous one's model and uses it as its reference."
    )
    lora: LoraSettings | None = Field(
        None, description="Train LoRA adapters (merged into the model after each stage); unset = full fine-tuning."
    )
    per_device_batch_size: int = Field(2, ge=1, description="Pairs per forward pass (each pair is 2 sequences).")
    gradient_accumulation: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    save_steps: int = Field(100, ge=1, description="Save a checkpoint every N optimizer steps (for --resume).")
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept per stage (older ones deleted).")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on the validation pairs every N steps; they are always evaluated at the end."
    )
    ref_batch_size: int | None = Field(
        None, ge=1, description="Pairs per reference forward when the reference log-probs are computed."
    )
    ref_cache_dir: Path | None = Field(
        None, description="Where reference log-probs are cached (default $ALOE_HOME/refcache, shared by runs)."
    )
    logging: Logging = Field(default_factory=Logging, description="Training curves: TensorBoard, W&B, interval.")
    seed: int = Field(0, description="Seed for adapter initialisation and data order.")
    precision: Precision = Field(
        "auto",
        description="auto: bf16 on a GPU that supports it, fp32 otherwise (TRL's bf16 default fails on CPU). fast: "
        "bf16 also on a CPU with AVX512-BF16/AMX (autocast), fp32 elsewhere.",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations in the backward pass to save memory. Default: on with a GPU (memory is "
        "the limit there), off on a CPU, where RAM is rarely the limit for models small enough to train on one "
        "and the recomputation costs about a third more time per step.",
    )
    allow_pickle: bool = Field(False, description="Allow loading pickle (.bin) weights, which can run code.")
    trust_remote_code: bool = Field(False, description="Allow a model's custom code from its folder or the Hub.")

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: tuple[DPOStage, ...]) -> tuple[DPOStage, ...]:
        if not value:
            raise ValueError("no stages: add at least one (name, dataset) under stages")
        names = [s.name for s in value]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"stage names must differ: {', '.join(duplicated)} is used twice")
        return value

    @model_validator(mode="after")
    def _no_qlora(self) -> DPORunConfig:
        if self.lora is not None and self.lora.qlora:
            raise ValueError(
                "lora.qlora is not supported by aloe train dpo (the merged stage model must be full precision): "
                "set lora.qlora: false"
            )
        return self


def load_dpo_config(path: Path) -> DPORunConfig:
    """A DPO config from a YAML file; any problem is one UserError naming the file, line and key."""
    return load_yaml(Path(path), DPORunConfig, what="DPO config")


# --- inputs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    """One stage's preference files and their content hashes."""

    train: Path
    train_sha256: str
    validation: Path | None
    validation_sha256: str | None


def _stage_pairs(stage: DPOStage) -> _Pairs:
    path = stage.dataset.expanduser()
    if path.is_dir():
        train = path / "train.jsonl"
        if not train.is_file():
            raise UserError(
                f"stage {stage.name}: dataset folder {path} has no train.jsonl: build it with `aloe data prefs` "
                "or point dataset at a JSONL file of pairs"
            )
        validation: Path | None = path / "validation.jsonl"
        if not (validation and validation.is_file() and validation.stat().st_size > 0):
            validation = None
    elif path.is_file():
        train, validation = path, None
    else:
        raise UserError(f"stage {stage.name}: dataset {path} not found: give a data-stage folder or a JSONL file")
    for split in (train, validation):
        if split is not None:
            _read_pairs(split)  # a bad or empty file fails now, not after the model has loaded
    return _Pairs(
        train.absolute(),
        models.file_sha256(train),
        validation.absolute() if validation else None,
        models.file_sha256(validation) if validation else None,
    )


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """Preference pairs of a JSONL file in TRL's conversational layout (prompt: messages; chosen and rejected: one
    assistant message each). A malformed line is a one-line UserError naming the file and line."""
    return [row for _, row in _read_pairs(path)]


def _read_pairs(path: Path) -> list[tuple[str, dict[str, Any]]]:
    from aloekit.data.schema import PreferencePair
    from aloekit.data.sources.mcqa import read_jsonl

    rows = []
    for where, record in read_jsonl(path):
        pair = PreferencePair.from_json(record, where).to_json()
        rows.append((pair["id"], {key: pair[key] for key in ("prompt", "chosen", "rejected")}))
    if not rows:
        raise UserError(f"{path} holds no preference pairs: rebuild the dataset")
    return rows


# --- the run -------------------------------------------------------------------------------------------------


def train_dpo(
    config: DPORunConfig, *, resume: bool = False, debug_tokens: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run every stage of ``config`` and return a summary (``out``, ``model``, ``steps``, per-stage results).

    Everything that can be checked before training is (versions, datasets, the model reference, the output
    folder). ``resume`` continues a run in ``config.out``: stages already done are skipped, the current one resumes
    from its last checkpoint. ``debug_tokens`` = N trains nothing and writes nothing: it returns ``{"status":
    "debug", "samples": ...}``, the first N pairs of each stage as TRL tokenizes them (see
    :func:`debug_token_rows`). ``progress`` shows progress bars and stage messages on stderr.
    """
    versions = check_versions()
    out = config.out.expanduser().absolute()
    pairs = [_stage_pairs(stage) for stage in config.stages]
    if debug_tokens:
        return {"status": "debug", "samples": debug_token_rows(config, debug_tokens)}
    _resolved_precision(config.precision)  # bf16/fp16 without a GPU: refused before anything is written
    resume, took_over = _check_out(out, resume)
    if took_over:
        print(took_over, file=sys.stderr)
    start = models.resolve(config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code)

    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    run = _read_json(out / "manifest.json") if resume else None
    run = {**_run_manifest(config, start, versions, previous=run), "status": "running", **run_owner()}
    _write_json(out / "manifest.json", run)

    policy = start
    results = []
    try:
        for index, (stage, stage_pairs) in enumerate(zip(config.stages, pairs, strict=True)):
            result = _run_stage(config, stage, stage_pairs, policy, out, resume, progress)
            run["stages"][index] = result["manifest"]
            _write_json(out / "manifest.json", run)
            results.append({k: v for k, v in result.items() if k != "manifest"})
            policy = models.resolve(str(out / stage.name / "model"))
    except Exception as e:
        # Recorded, so the next run in OUT knows this one is over (and takes it over if it left no checkpoint).
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        run.update({"status": "failed", "failed": _now(), "error": reason})
        with contextlib.suppress(OSError):
            _write_json(out / "manifest.json", run)
        raise

    final = out / config.stages[-1].name / "model"
    _link_final(out, final)
    run["final_model"] = str(final)
    run["finished"] = _now()
    run["status"] = "finished"
    _write_json(out / "manifest.json", run)
    return {
        "status": "done",
        "out": str(out),
        "model": str(final),
        "manifest": str(out / "manifest.json"),
        "steps": sum(r.get("steps", 0) for r in results if r["status"] == "trained"),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in results if r["status"] == "trained"), 2),
        "stages": results,
    }


def _pairs_per_run(config: DPORunConfig, stage: DPOStage) -> int | None:
    """Pairs ``max_steps`` optimizer steps consume over every process (None: epochs decide, all are used)."""
    if not stage.max_steps:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return stage.max_steps * config.per_device_batch_size * config.gradient_accumulation * world


def pairs_used(rows: list[dict[str, Any]], needed: int | None) -> list[dict[str, Any]]:
    """The first ``needed`` pairs, plus the rest of the last one's group (pairs of one question or request, ids
    ``<item>:<variant>``, are written next to each other): a stage that stops after ``max_steps`` never sees the
    others, so their reference log-probabilities (a forward pass each, minutes for thousands of pairs on a CPU)
    are not computed. Keeping whole groups keeps what a group balances (a question's rotations: every letter
    chosen and rejected once) balanced in what is trained on."""
    if needed is None or needed >= len(rows):
        return rows
    group = pair_group(rows[needed - 1])
    end = needed
    while end < len(rows) and pair_group(rows[end]) == group:
        end += 1
    return rows[:end]


def pair_group(row: Mapping[str, Any]) -> str:
    """The question or request a pair was made from (ids ``<item>:<variant>``); a pair without an id is its own."""
    pair_id = row.get("id")
    return str(pair_id).rsplit(":", 1)[0] if pair_id is not None else f"#{id(row)}"


def _is_main() -> bool:
    """The first process of a distributed run (accelerate / torchrun set RANK), or the only one. Only it checks
    and writes the run's files; the others train and wait for it at the end of each stage."""
    return int(os.environ.get("RANK", "0")) == 0


def _check_out(out: Path, resume: bool) -> tuple[bool, str | None]:
    """Check that OUT can take this run; return (resume, message). A run that failed, or whose process is gone,
    before any stage saved a checkpoint is taken over (started afresh, with a message) rather than blocking the
    corrected rerun until the user deletes the folder."""
    if not _is_main():
        return resume, None  # the first process has checked (and is about to write into) the folder
    if out.exists() and not out.is_dir():
        raise UserError(f"out {out} is a file: name a folder")
    held = out.is_dir() and any(out.iterdir())
    if held:
        why = abandoned(_read_json(out / "manifest.json"))
        trained = any(out.glob("*/checkpoints/checkpoint-*")) or any(out.glob("*/model/config.json"))
        if why is not None and not trained:
            return False, f"taking over {out}: its earlier run stopped before its first checkpoint ({why})"
    if not resume and held:
        raise UserError(f"out {out} already holds files: pass --resume to continue that run, or choose a new folder")
    return resume, None


def _run_manifest(
    config: DPORunConfig, start: models.ResolvedModel, versions: dict[str, str], previous: dict[str, Any] | None
) -> dict[str, Any]:
    from aloekit.provenance import package_versions

    stages = list((previous or {}).get("stages") or [])
    by_name = {s.get("name"): s for s in stages if isinstance(s, dict)}
    return {
        "kind": "aloe-train-dpo",
        "started": (previous or {}).get("started") or _now(),
        "versions": {**package_versions(*_VERSIONED), **versions},
        "seed": config.seed,
        "config_sha256": hashlib.sha256(config.model_dump_json().encode()).hexdigest(),
        "model": {"reference": config.model, "path": str(start.path), "fingerprint": models.fingerprint(start)},
        "stages": [by_name.get(s.name) or {"name": s.name, "status": "pending"} for s in config.stages],
        "final_model": None,
    }


def _stage_identity(
    config: DPORunConfig, stage: DPOStage, pairs: _Pairs, policy_fingerprint: str, precision: str
) -> str:
    """What makes a stage's result: its settings, the training settings, its inputs. A stage in OUT is only
    skipped or resumed when this matches."""
    payload = {
        "stage": stage.model_dump(mode="json", exclude={"dataset"}),
        "lora": config.lora.model_dump(mode="json") if config.lora else None,
        "batch": [config.per_device_batch_size, config.gradient_accumulation],
        "warmup_ratio": config.warmup_ratio,
        "seed": config.seed,
        "precision": precision,
        "pairs": [pairs.train_sha256, pairs.validation_sha256],
        "policy": policy_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def policy_dtype(precision: str, *, lora: bool) -> str:
    """The dtype the policy's weights are held in. Full fine-tuning keeps fp32 master weights and lets autocast
    compute in bf16, as SFT does: weights held in bf16 lose every update smaller than ~1/256 of their value, which at
    DPO's learning rates is nearly all of them (measured: a 40-step stage moved the weights by 5e-5 relative).
    Frozen LoRA base weights can be bf16."""
    return "bfloat16" if precision == "bf16" and lora else "float32"


def _resolved_precision(precision: str) -> str:
    flags = precision_args(precision)  # type: ignore[arg-type]
    return "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"


def _run_stage(
    config: DPORunConfig,
    stage: DPOStage,
    pairs: _Pairs,
    policy: models.ResolvedModel,
    out: Path,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    from transformers.trainer_utils import get_last_checkpoint

    stage_dir = out / stage.name
    precision = _resolved_precision(config.precision)
    policy_fingerprint = models.fingerprint(policy)
    identity = _stage_identity(config, stage, pairs, policy_fingerprint, precision)
    manifest_path = stage_dir / "manifest.json"
    previous = _read_json(manifest_path) if resume else None
    if previous is not None and previous.get("identity") != identity:
        raise UserError(
            f"{stage_dir} was trained with other settings or inputs than this config's stage {stage.name}: "
            "resume with the config it was started with, or choose a new out folder"
        )
    if previous is not None and previous.get("status") == "done" and (stage_dir / "model" / "config.json").is_file():
        _say(progress, f"stage {stage.name}: done already, skipped")
        return {"name": stage.name, "status": "skipped", "model": str(stage_dir / "model"), "manifest": previous}

    checkpoints = stage_dir / "checkpoints"
    checkpoint = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.is_dir() else None
    manifest: dict[str, Any] = {
        "name": stage.name,
        "status": "running",
        "identity": identity,
        "started": _now(),
        "dataset": {
            "train": str(pairs.train),
            "train_sha256": pairs.train_sha256,
            "validation": str(pairs.validation) if pairs.validation else None,
            "validation_sha256": pairs.validation_sha256,
        },
        "policy": {"path": str(policy.path), "fingerprint": policy_fingerprint},
        "reference": {"path": str(policy.path), "fingerprint": policy_fingerprint},
        "resumed_from": checkpoint,
    }
    _write_json(manifest_path, manifest)

    started = time.perf_counter()
    trainer, cache, tokenizer, timer = _build_trainer(
        config, stage, pairs, policy, policy_fingerprint, stage_dir, progress
    )
    _say(progress, f"stage {stage.name}: training" + (f" from {Path(checkpoint).name}" if checkpoint else ""))
    with _quiet(progress):
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        eval_metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}

    metrics = _metrics(trainer.state.log_history, train_result.metrics, eval_metrics, timer)
    if eval_metrics and tuple(stage.loss_type) == ("sigmoid",):
        # Before the first step the policy IS the reference (each stage starts from its own reference), so
        # every pair's implicit reward is 0: the sigmoid DPO loss is log 2 and the margin 0 by construction.
        # Stated, not computed: an evaluation pass would cost minutes to print the same number.
        metrics["eval_loss_before"] = math.log(2)
        metrics["eval_before"] = "policy = reference at step 0: loss log 2, reward margin 0 (by construction)"
    model = trainer.accelerator.unwrap_model(trainer.model)
    # Trainer sets config.use_cache = TrainingArguments.use_cache (False) for training; the saved model should
    # generate with its KV cache.
    model.config.use_cache = True
    model_dir = stage_dir / "model"
    if _is_main():
        export_model(
            model,  # LoRA adapters are merged in by export_model
            tokenizer,
            model_dir,
            base_path=policy.path,
            card=_model_card(config, stage, pairs, metrics),
        )
    # Every process continues from this stage's model: the others wait until the first has written it.
    trainer.accelerator.wait_for_everyone()

    _write_json(stage_dir / "metrics.json", metrics)
    manifest.update(
        status="done",
        finished=_now(),
        seconds=round(time.perf_counter() - started, 2),
        steps=trainer.state.global_step,
        model={"path": str(model_dir), "fingerprint": models.fingerprint(models.resolve(str(model_dir)))},
        ref_cache={
            split: {"key": key, "path": str(cache.path(split)), "outcome": cache.outcome.get(split)}
            for split, key in cache.keys.items()
        },
        metrics={"first": metrics["first"], "last": metrics["last"], "eval": metrics["eval"]},
    )
    _write_json(manifest_path, manifest)
    del trainer, model
    _free_memory()
    return {
        "name": stage.name,
        "status": "trained",
        "model": str(model_dir),
        "steps": manifest["steps"],
        "seconds": manifest["seconds"],
        "ref_cache": dict(cache.outcome),
        "step_seconds": metrics["step_seconds"],
        "last": metrics["last"],
        "eval": metrics["eval"],
        "manifest": manifest,
    }


def _build_trainer(
    config: DPORunConfig,
    stage: DPOStage,
    pairs: _Pairs,
    policy: models.ResolvedModel,
    policy_fingerprint: str,
    stage_dir: Path,
    progress: bool,
) -> tuple[Any, refcache.RefCache, Any, _StepTimer]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig

    tokenizer = _tokenizer(policy, config)
    precision = _resolved_precision(config.precision)
    dtype = getattr(torch, policy_dtype(precision, lora=config.lora is not None))
    model = AutoModelForCausalLM.from_pretrained(policy.path, dtype=dtype, trust_remote_code=config.trust_remote_code)

    rows = read_pairs(pairs.train)
    used = pairs_used(rows, _pairs_per_run(config, stage))
    if len(used) < len(rows):
        _say(progress, f"stage {stage.name}: {stage.max_steps} steps use {len(used)} of {len(rows)} pairs")
    train = Dataset.from_list(used)
    validation = Dataset.from_list(read_pairs(pairs.validation)) if pairs.validation else None

    versions = check_versions()
    tokenization = {
        "tokenizer": refcache.tokenizer_hash(tokenizer),
        "max_length": stage.max_length,
        "truncation_mode": "keep_start",
        "precision": precision,
        "ld_alpha": None,
        "trl": versions["trl"],
    }
    keys = {
        "train": refcache.cache_key(
            # The pairs used are a prefix of the file: its hash and length name them.
            dataset_sha256=pairs.train_sha256 if len(used) == len(rows) else f"{pairs.train_sha256}:{len(used)}",
            split="train",
            reference_fingerprint=policy_fingerprint,
            tokenization=tokenization,
        )
    }
    if pairs.validation_sha256 is not None:
        keys["eval"] = refcache.cache_key(
            dataset_sha256=pairs.validation_sha256,
            split="eval",
            reference_fingerprint=policy_fingerprint,
            tokenization=tokenization,
        )
    cache = refcache.RefCache(
        folder=(config.ref_cache_dir or models.aloe_home() / "refcache").expanduser(),
        keys=keys,
        metadata={"reference": policy_fingerprint, "stage": stage.name, **{k: str(v) for k, v in tokenization.items()}},
    )

    gradient_checkpointing = (
        config.gradient_checkpointing if config.gradient_checkpointing is not None else device_kind() == "cuda"
    )
    report_to = [target for target in config.logging.report_to() if target != "tensorboard"]
    args = DPOConfig(
        output_dir=str(stage_dir / "checkpoints"),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps or -1,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,
        beta=stage.beta,
        loss_type=list(stage.loss_type),
        max_length=stage.max_length,
        truncation_mode="keep_start",
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=config.ref_batch_size,
        **_checkpointing_arg(DPOConfig, gradient_checkpointing),
        logging_steps=config.logging.steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if validation is not None and config.eval_steps else "no",
        eval_steps=config.eval_steps,
        report_to=report_to or "none",
        seed=config.seed,
        disable_tqdm=not progress,
        trust_remote_code=config.trust_remote_code,
        **precision_args(config.precision),
    )
    timer = _StepTimer()
    callbacks: list[Any] = [timer.callback()]
    if config.logging.tensorboard:
        board = TensorBoardCallback()
        board.logging_dir = str(stage_dir / "runs")
        callbacks.append(board)

    _say(
        progress,
        f"stage {stage.name}: {len(train)} pairs; reference log-probs "
        + ("cached" if cache.complete() else "computed once, then cached"),
    )
    with _quiet(progress), _reference_hash(policy_fingerprint):
        trainer = _trainer_class()(
            model=model,
            ref_model=None,
            args=args,
            train_dataset=train,
            eval_dataset=validation,
            processing_class=tokenizer,
            peft_config=config.lora.peft_config() if config.lora else None,
            callbacks=callbacks,
            ref_cache=cache,
            ref_exchange_dir=stage_dir / "ref-logps",
            groups=[pair_group(row) for row in used],
        )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # it prints every log line to stdout
    return trainer, cache, tokenizer, timer


def _checkpointing_arg(config_class: type, enabled: bool) -> dict[str, bool]:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


_TRAINER: Any = None


def _trainer_class() -> Any:
    """DPOTrainer whose reference pass goes through the on-disk cache (built lazily: importing TRL is slow)."""
    global _TRAINER
    if _TRAINER is not None:
        return _TRAINER
    import torch
    from trl import DPOTrainer

    class AloeDPOTrainer(DPOTrainer):  # type: ignore[misc]
        def __init__(
            self,
            *args: Any,
            ref_cache: refcache.RefCache,
            ref_exchange_dir: Path,
            groups: list[str] | None = None,
            **kwargs: Any,
        ) -> None:
            # Set before DPOTrainer.__init__, which runs the reference pass (precompute_ref_log_probs).
            self.aloe_ref_cache = ref_cache
            self.aloe_ref_exchange_dir = ref_exchange_dir
            self.aloe_groups = groups
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            # Groups shuffled, each group's pairs consecutive (train/packing.py grouped_order says why).
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if self.aloe_groups is None or dataset is None:
                return super()._get_train_sampler(train_dataset)
            if len(dataset) != len(self.aloe_groups):
                raise RuntimeError(f"DPO dataset has {len(dataset)} rows for {len(self.aloe_groups)} group keys")
            return grouped_order(self.aloe_groups, self.args.data_seed or self.args.seed)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            def compute() -> Any:
                # Whatever the pass draws from the global RNG (DataLoader seeds) is given back, so training
                # sees the same random state whether the values were computed now or read from the cache.
                devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
                with torch.random.fork_rng(devices=devices):
                    return super(AloeDPOTrainer, self)._precompute_ref_logps(
                        _shared_cache_path(dataset, self.aloe_ref_exchange_dir, self.accelerator.num_processes),
                        name,
                        batch_size,
                    )

            with score_trained_positions_only():
                return self.aloe_ref_cache.attach(dataset, name, compute)

        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            with score_trained_positions_only():
                return super().compute_loss(*args, **kwargs)

    _TRAINER = AloeDPOTrainer
    return _TRAINER


def _shared_cache_path(dataset: Any, folder: Path, num_processes: int) -> Any:
    """``dataset``, with its cache files written where every process can read them.

    TRL's reference pass has the main process write the values to ``dataset._get_cache_file_path(fingerprint)``
    and every process read that file back. For a dataset held in memory (ours: pairs read from JSONL) that path is
    a random name in a temporary folder private to each process, so under ``accelerate launch`` the other ranks
    find nothing (FileNotFoundError) the first time a stage runs. The stage folder is shared by every rank, and
    the fingerprint TRL passes is broadcast from rank 0, so every rank names the same file there.
    """
    if num_processes <= 1 or dataset.cache_files:
        return dataset
    folder.mkdir(parents=True, exist_ok=True)
    dataset._get_cache_file_path = lambda fingerprint: str(folder / f"cache-{fingerprint}.arrow")
    return dataset


@contextlib.contextmanager
def _reference_hash(fingerprint: str) -> Iterator[None]:
    """With precompute_ref_log_probs, DPOTrainer hashes every weight of the reference in memory (TRL's
    ``hash_module``) to key its own datasets cache; the weights files' fingerprint is already known, so use it."""
    from trl.trainer import dpo_trainer

    original = getattr(dpo_trainer, "hash_module", None)
    if original is None:
        yield
        return
    dpo_trainer.hash_module = lambda module: fingerprint  # type: ignore[attr-defined]
    try:
        yield
    finally:
        dpo_trainer.hash_module = original  # type: ignore[attr-defined]


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence TRL's and datasets' progress bars unless progress is on."""
    if progress:
        yield
        return
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    previous = os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
        if was_enabled:
            datasets.enable_progress_bars()


class _StepTimer:
    """Wall time of each optimizer step (forward, backward, update), for metrics.json and benchmarks."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class StepTimer(TrainerCallback):  # type: ignore[misc]
            start = 0.0

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.start = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer.seconds.append(time.perf_counter() - self.start)

        return StepTimer()


# --- outputs -------------------------------------------------------------------------------------------------

_SUMMARY_KEYS = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
)


def _metrics(
    history: list[dict[str, Any]], train: dict[str, Any], evaluation: dict[str, Any], timer: _StepTimer
) -> dict[str, Any]:
    logged = [entry for entry in history if "rewards/accuracies" in entry]

    def summary(entry: dict[str, Any] | None) -> dict[str, Any] | None:
        if entry is None:
            return None
        return {"step": entry.get("step"), **{k: entry[k] for k in _SUMMARY_KEYS if k in entry}}

    steps = timer.seconds[1:] or timer.seconds  # the first step includes one-off setup
    return {
        "first": summary(logged[0] if logged else None),
        "last": summary(logged[-1] if logged else None),
        "eval": {k: v for k, v in evaluation.items() if isinstance(v, int | float)},
        "train": {k: v for k, v in train.items() if isinstance(v, int | float)},
        "step_seconds": {
            "median": round(statistics.median(steps), 4) if steps else None,
            "mean": round(statistics.fmean(steps), 4) if steps else None,
            "steps": len(timer.seconds),
        },
        "log_history": history,
    }


def _model_card(config: DPORunConfig, stage: DPOStage, pairs: _Pairs, metrics: dict[str, Any]) -> str:
    """README.md of a stage's model: Hub metadata, what was trained and how, the final reward metrics."""
    meta = {
        "base_model": base_model_id(config.model),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "aloekit", "trl", "dpo", *(["lora"] if config.lora else [])],
    }
    index = config.stages.index(stage)
    start = f"`{config.model}`" if index == 0 else f"the model of stage `{config.stages[index - 1].name}`"
    settings = {
        "beta": stage.beta,
        "loss_type": ", ".join(stage.loss_type),
        "learning_rate": stage.learning_rate,
        "max_length": stage.max_length,
        "lora": "r={r}, alpha={alpha}".format(**config.lora.model_dump()) if config.lora else "no (full fine-tuning)",
        "pairs": pairs.train.name,
    }
    results = {**(metrics["last"] or {}), **metrics["eval"]}
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in results.items())
    setting_rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
    return (
        f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# {stage.name}\n\n"
        f"Stage {index + 1} of {len(config.stages)} of aloekit's DPO alignment (the Aloe recipe): trained from "
        f"{start}, which was also its frozen reference"
        f"{', with LoRA adapters merged into the weights' if config.lora else ''}.\n\n"
        f"## Training\n\n| setting | value |\n|---|---|\n{setting_rows}\n\n"
        f"## Last logged step and validation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        "## Limitations\n\nA research model: it is not a medical device and must not be used for diagnosis or "
        "treatment decisions without a qualified professional.\n"
    )


def debug_token_rows(config: DPORunConfig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` pairs of each stage exactly as TRL's DPOTrainer tokenizes and truncates them, as rows of
    ``[(token text, scored), ...]``: one row for prompt + chosen and one for prompt + rejected; the reply tokens,
    whose log-probabilities DPO compares, are flagged. Pairs TRL would drop (prompt filling max_length) are
    left out. No model is loaded and nothing is written."""
    from types import SimpleNamespace

    from datasets import Dataset
    from trl import DPOTrainer

    start = models.resolve(config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code)
    tokenizer = _tokenizer(start, config)
    rows: list[dict[str, Any]] = []
    for stage in config.stages:
        records = _read_pairs(_stage_pairs(stage).train)[:n]
        dataset = Dataset.from_list([{**row, "id": pair_id} for pair_id, row in records])
        settings = SimpleNamespace(dataset_num_proc=None, max_length=stage.max_length, truncation_mode="keep_start")
        with _quiet(False):
            # TRL's own preprocessing (chat template, prompt/completion split, filtering), run without a trainer.
            tokenized = DPOTrainer._prepare_dataset(
                SimpleNamespace(_tokenizer=tokenizer), dataset, tokenizer, settings, "train"
            )
        for example in tokenized:
            for reply in ("chosen", "rejected"):
                ids = [*example["prompt_ids"], *example[f"{reply}_ids"]][: stage.max_length]
                flags = [False] * len(example["prompt_ids"]) + [True] * len(example[f"{reply}_ids"])
                tokens = [
                    (tokenizer.decode([t], skip_special_tokens=False), keep)
                    for t, keep in zip(ids, flags[: len(ids)], strict=True)
                ]
                rows.append(
                    {
                        "id": f"{stage.name}/{example['id']} {reply}",
                        "tokens": tokens,
                        "trained": sum(flags[: len(ids)]),
                        "length": len(ids),
                    }
                )
    return rows


def _tokenizer(model: models.ResolvedModel, config: DPORunConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=config.trust_remote_code)
    if not tokenizer.chat_template:
        raise UserError(
            f"model {model.path} has no chat template: DPO renders each pair in the model's chat format; "
            "start from an instruct or SFT model"
        )
    return tokenizer


def _link_final(out: Path, final: Path) -> None:
    """OUT/model -> <last stage>/model (a relative link, so the folder can be moved)."""
    if not _is_main():
        return
    link = out / "model"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        return  # a real folder someone put there: leave it, manifest.json names the final model
    with contextlib.suppress(OSError):
        link.symlink_to(os.path.relpath(final, out), target_is_directory=True)


def _free_memory() -> None:
    """Let the next stage load its policy into the memory this stage's trainer held."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def _write_text(path: Path, text: str) -> None:
    if not _is_main():
        return  # one writer per file in a distributed run
    models.atomic_write_text(path, text)  # with the user's umask: records are for everyone under the usual 022


__all__ = ["DPORunConfig", "DPOStage", "LossType", "debug_token_rows", "load_dpo_config", "read_pairs", "train_dpo"]
