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
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from aloekit import models
from aloekit.errors import UserError
from aloekit.report.card import dpo_card
from aloekit.train.callbacks import quiet_libraries
from aloekit.train.common import check_versions, resolved_precision
from aloekit.train.dpo_config import DPORunConfig, DPOStage, LossType, load_dpo_config
from aloekit.train.dpo_data import Pairs, pairs_used, read_pairs, stage_pairs
from aloekit.train.dpo_trainer import build_stage_trainer, debug_token_rows, free_memory, say, stage_metrics
from aloekit.train.export import base_model_id, export_model
from aloekit.train.runfolder import (
    claim_out,
    failure,
    is_main,
    last_complete_checkpoint,
    library_versions,
    now,
    read_json,
    run_owner,
    write_json,
    write_text,
)


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
    pairs = [stage_pairs(stage) for stage in config.stages]
    if debug_tokens:
        return {"status": "debug", "samples": debug_token_rows(config, debug_tokens)}
    resolved_precision(config.precision)  # bf16/fp16 without a GPU: refused before anything is written
    resume, took_over = claim_out(
        out, resume, trained=lambda: any(out.glob("*/checkpoints/checkpoint-*")) or any(out.glob("*/model/config.json"))
    )
    if took_over:
        print(took_over, file=sys.stderr)
    start = models.resolve(config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code)

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    run = read_json(out / "manifest.json") if resume else None
    run = {**_run_manifest(config, start, versions, previous=run), "status": "running", **run_owner()}
    write_json(out / "manifest.json", run)

    policy = start
    results = []
    try:
        for index, (stage, pairs_of_stage) in enumerate(zip(config.stages, pairs, strict=True)):
            result = _run_stage(config, stage, pairs_of_stage, policy, out, resume, progress)
            run["stages"][index] = result["manifest"]
            write_json(out / "manifest.json", run)
            results.append({k: v for k, v in result.items() if k != "manifest"})
            policy = models.resolve(str(out / stage.name / "model"))
    except Exception as e:
        # Recorded, so the next run in OUT knows this one is over (and takes it over if it left no checkpoint).
        run.update(failure(e))
        with contextlib.suppress(OSError):
            write_json(out / "manifest.json", run)
        raise

    final = out / config.stages[-1].name / "model"
    _link_final(out, final)
    run["final_model"] = str(final)
    run["finished"] = now()
    run["status"] = "finished"
    write_json(out / "manifest.json", run)
    return {
        "status": "done",
        "out": str(out),
        "model": str(final),
        "manifest": str(out / "manifest.json"),
        "steps": sum(r.get("steps", 0) for r in results if r["status"] == "trained"),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in results if r["status"] == "trained"), 2),
        "stages": results,
    }


def _run_manifest(
    config: DPORunConfig, start: models.ResolvedModel, versions: dict[str, str], previous: dict[str, Any] | None
) -> dict[str, Any]:
    stages = list((previous or {}).get("stages") or [])
    by_name = {s.get("name"): s for s in stages if isinstance(s, dict)}
    return {
        "kind": "aloe-train-dpo",
        "started": (previous or {}).get("started") or now(),
        "versions": {**library_versions(), **versions},
        "seed": config.seed,
        "config_sha256": hashlib.sha256(config.model_dump_json().encode()).hexdigest(),
        "model": {"reference": config.model, "path": str(start.path), "fingerprint": models.fingerprint(start)},
        "stages": [by_name.get(s.name) or {"name": s.name, "status": "pending"} for s in config.stages],
        "final_model": None,
    }


def _stage_identity(
    config: DPORunConfig, stage: DPOStage, pairs: Pairs, policy_fingerprint: str, precision: str
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


def _run_stage(
    config: DPORunConfig,
    stage: DPOStage,
    pairs: Pairs,
    policy: models.ResolvedModel,
    out: Path,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    stage_dir = out / stage.name
    precision = resolved_precision(config.precision)
    policy_fingerprint = models.fingerprint(policy)
    identity = _stage_identity(config, stage, pairs, policy_fingerprint, precision)
    manifest_path = stage_dir / "manifest.json"
    previous = read_json(manifest_path) if resume else None
    if previous is not None and previous.get("identity") != identity:
        raise UserError(
            f"{stage_dir} was trained with other settings or inputs than this config's stage {stage.name}: "
            "resume with the config it was started with, or choose a new out folder"
        )
    if previous is not None and previous.get("status") == "done" and (stage_dir / "model" / "config.json").is_file():
        say(progress, f"stage {stage.name}: done already, skipped")
        return {"name": stage.name, "status": "skipped", "model": str(stage_dir / "model"), "manifest": previous}

    checkpoints = stage_dir / "checkpoints"
    checkpoint = last_complete_checkpoint(checkpoints) if resume else None
    manifest: dict[str, Any] = {
        "name": stage.name,
        "status": "running",
        "identity": identity,
        "started": now(),
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
    write_json(manifest_path, manifest)

    started = time.perf_counter()
    trainer, cache, tokenizer, timer, total = build_stage_trainer(
        config, stage, pairs, policy, policy_fingerprint, stage_dir, progress
    )
    say(progress, f"stage {stage.name}: training" + (f" from {Path(checkpoint).name}" if checkpoint else ""))
    with quiet_libraries(progress):
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        eval_metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}

    metrics = stage_metrics(trainer.state.log_history, train_result.metrics, eval_metrics, timer)
    # TRL counts epochs over the pairs it was given, which a stage that stops after max_steps cuts to what those
    # steps use: 1.0 there can mean a seventh of the training file. Epochs covered are over the whole file.
    epoch = train_result.metrics.get("epoch")
    seen = (float(epoch) if isinstance(epoch, int | float) else 0.0) * len(trainer.train_dataset)
    metrics["pairs"] = {"train": total, "given_to_trl": len(trainer.train_dataset)}
    metrics["epochs"] = round(seen / total, 4) if total else None
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
    if is_main():
        export_model(
            model,  # LoRA adapters are merged in by export_model
            tokenizer,
            model_dir,
            base_path=policy.path,
            card=_model_card(config, stage, pairs, metrics),
        )
    # Every process continues from this stage's model: the others wait until the first has written it.
    trainer.accelerator.wait_for_everyone()

    write_json(stage_dir / "metrics.json", metrics)
    manifest.update(
        status="done",
        finished=now(),
        seconds=round(time.perf_counter() - started, 2),
        steps=trainer.state.global_step,
        model={"path": str(model_dir), "fingerprint": models.fingerprint(models.resolve(str(model_dir)))},
        ref_cache={
            split: {"key": key, "path": str(cache.path(split)), "outcome": cache.outcome.get(split)}
            for split, key in cache.keys.items()
        },
        metrics={"first": metrics["first"], "last": metrics["last"], "eval": metrics["eval"]},
    )
    write_json(manifest_path, manifest)
    del trainer, model
    free_memory()
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


def _model_card(config: DPORunConfig, stage: DPOStage, pairs: Pairs, metrics: dict[str, Any]) -> str:
    """README.md of a stage's model: Hub metadata, what was trained and how, the final reward metrics."""
    index = config.stages.index(stage)
    settings = {
        "beta": stage.beta,
        "loss_type": ", ".join(stage.loss_type),
        "learning_rate": stage.learning_rate,
        "max_length": stage.max_length,
        "lora": "r={r}, alpha={alpha}".format(**config.lora.model_dump()) if config.lora else "no (full fine-tuning)",
        "pairs": pairs.train.name,
    }
    return dpo_card(
        base_model=base_model_id(config.model),
        stage=stage.name,
        number=index + 1,
        stages=len(config.stages),
        start_model=config.model if index == 0 else None,
        start_stage=config.stages[index - 1].name if index else None,
        lora=config.lora is not None,
        settings=settings,
        results={**(metrics["last"] or {}), **metrics["eval"]},
    )


def _link_final(out: Path, final: Path) -> None:
    """OUT/model -> <last stage>/model (a relative link, so the folder can be moved)."""
    if not is_main():
        return
    link = out / "model"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        return  # a real folder someone put there: leave it, manifest.json names the final model
    with contextlib.suppress(OSError):
        link.symlink_to(os.path.relpath(final, out), target_is_directory=True)


__all__ = [
    "DPORunConfig",
    "DPOStage",
    "LossType",
    "debug_token_rows",
    "load_dpo_config",
    "pairs_used",
    "read_pairs",
    "train_dpo",
]
