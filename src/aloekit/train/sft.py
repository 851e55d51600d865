"""Supervised fine-tuning (``aloe train sft``): TRL's SFTTrainer with aloekit's defaults and guarantees.

What aloekit adds to a plain ``SFTTrainer``:

* **Loss on the assistant's tokens only**, with masks built from the chat template and checked
  (:mod:`aloekit.train.masks`): works with templates that have no ``{% generation %}`` markers (SmolLM2's), and the
  end-of-turn token is trained so the model learns to stop. TRL receives a pre-tokenized dataset
  (``input_ids`` + ``labels``) and neither re-tokenizes nor rebuilds labels.
* **Padding-free packing without attention across examples**: best-fit-decreasing packing (ours,
  :mod:`aloekit.train.packing`, because it keeps the letter-rotated copies of one question in one row) puts several
  conversations into one row of at most ``max_length`` tokens, and TRL's padding-free collator flattens a batch
  into one sequence whose ``position_ids`` restart at 0 at each conversation. transformers 5 turns restarting
  position ids (with no attention mask) into a block-diagonal causal mask for sdpa and eager attention (and into
  varlen kernels for flash attention), so no token attends to another conversation. That property is checked on
  the actual model before training (a packed forward must equal separate forwards), and proven in the tests.
* **CPU-safe defaults**: fp32 on a CPU (TRL defaults to bf16), gradient checkpointing off (on a CPU and for
  small models it only recomputes the forward pass: more time for memory nobody is short of),
  ``max_length`` (not the removed ``max_seq_length``). Measured on SmolLM2-135M on this project's 2-core CPU,
  these defaults train ~1.5x more tokens per second than a plain SFTTrainer with TRL's defaults.
* **Exact resume**: checkpoints keep optimizer, scheduler, RNG states and the step; ``resume`` continues from the
  last *complete* checkpoint (a checkpoint a kill interrupted is discarded) with the same data order.
* **Records**: ``OUT/config.yaml`` (the config as run), ``OUT/manifest.json`` (versions, seed, dataset
  fingerprint, status, times), ``OUT/metrics.json`` (losses, tokens/s), TensorBoard logs in ``OUT/runs``, and
  ``OUT/model``, a standalone export (LoRA merged) with a model card.

Validation loss is the trainer's: the mean over evaluation batches of each batch's token-averaged loss on
assistant tokens (batches are packed too). ``tokens_per_second`` counts every token of the trained rows (context
included) over the time spent in optimizer steps (evaluation and checkpointing excluded), all processes together.
Under ``accelerate launch`` (recipes/accelerate/*.yaml) every process trains and the first writes the records.

Layout of ``OUT``::

    config.yaml  manifest.json  metrics.json   the run's records
    checkpoints/checkpoint-N/                  the last ``save_total_limit`` checkpoints
    runs/                                      TensorBoard event files
    model/                                     the exported model (``export: true``)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from aloekit import models
from aloekit.errors import UserError
from aloekit.report.card import sft_card
from aloekit.train.callbacks import quiet_libraries
from aloekit.train.common import check_versions, device_kind
from aloekit.train.export import base_model_id, export_model
from aloekit.train.runfolder import (
    claim_out,
    complete_checkpoints,
    discard_incomplete_checkpoints,
    failure,
    is_main,
    last_complete_checkpoint,
    library_versions,
    now,
    read_json,
    run_owner,
    write_text,
)
from aloekit.train.sft_config import CHECKPOINTS, MODEL, SFTRunConfig
from aloekit.train.sft_data import load_chat_data, source_datasets, tokenize_split
from aloekit.train.sft_trainer import (
    build_trainer,
    debug_token_rows,
    export_dtype,
    reload_gathered,
    sharded_training,
)


def train_sft(
    config: SFTRunConfig,
    *,
    resume: bool = False,
    debug_tokens: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run SFT as ``config`` says; return the run's metrics (``status`` 'finished').

    ``resume`` continues the run in ``config.out`` from its last complete checkpoint (optimizer, scheduler, RNG
    and data order included): the final weights equal those of an uninterrupted run. ``debug_tokens`` returns
    the first N conversations' tokens with their trained flags (``status`` 'debug') and trains nothing.
    """
    versions = check_versions()
    with quiet_libraries(progress):
        if debug_tokens is not None:
            return {"status": "debug", "samples": debug_token_rows(config, debug_tokens)}
        try:
            return _train(
                config, resume=resume, progress=progress, say=log or (lambda message: None), versions=versions
            )
        except Exception as e:
            if is_main():
                _mark_failed(config.out / "manifest.json", e)
            raise


def _mark_failed(path: Path, error: BaseException) -> None:
    """Record in this process's "running" manifest that the run failed (and why), so the next run in the folder
    takes it over instead of taking it for a run still in progress."""
    manifest = read_json(path) or {}
    if manifest.get("status") != "running" or manifest.get("pid") != os.getpid():
        return
    manifest.update(failure(error))
    with contextlib.suppress(OSError):
        write_text(path, json.dumps(manifest, indent=2))


def _config_record(config: SFTRunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def _prepare_out(config: SFTRunConfig, resume: bool) -> tuple[bool, str | None]:
    """Check that OUT can take this run; return (resume, message).

    A run that failed, or whose process is gone, before its first complete checkpoint has nothing worth keeping:
    it is taken over (started afresh, with a message) instead of blocking the corrected rerun until the user
    deletes the folder. A run with checkpoints is resumed with --resume, as before.
    """
    out = config.out
    held = out.is_dir() and any(out.iterdir())
    resume, took_over = claim_out(out, resume, trained=lambda: bool(complete_checkpoints(out / CHECKPOINTS)))
    if took_over:
        (out / "metrics.json").unlink(missing_ok=True)  # the stale run's, never this one's
        return resume, took_over
    if resume and held:
        recorded = out / "config.yaml"
        if recorded.is_file():
            before = yaml.safe_load(recorded.read_text(encoding="utf-8")) or {}
            current = _config_record(config)
            changed = sorted(k for k in set(before) | set(current) if before.get(k) != current.get(k))
            if changed:
                raise UserError(
                    f"--resume with a config that differs from the run in {out} ({', '.join(changed)}): "
                    "resume with the same config, or start a new run in a new folder"
                )
    return resume, None


def _train(
    config: SFTRunConfig, *, resume: bool, progress: bool, say: Callable[[str], None], versions: dict[str, str]
) -> dict[str, Any]:
    # Under `accelerate launch` every process runs this; only the first checks and writes the records.
    main = is_main()
    if main:
        resume, took_over = _prepare_out(config, resume)
        if took_over:
            say(took_over)
    out = config.out
    checkpoints = out / CHECKPOINTS
    removed = discard_incomplete_checkpoints(checkpoints) if main else []
    if removed:
        say(f"discarded incomplete checkpoint(s) left by an interrupted run: {', '.join(removed)}")
    resume_from = last_complete_checkpoint(checkpoints) if resume else None
    if resume and resume_from is None:
        say(f"no complete checkpoint in {checkpoints}: starting from step 0")

    resolved = models.resolve(
        config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
    )
    data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    if not data.train:
        raise UserError(f"dataset {config.dataset} has no training conversations")

    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] = {}
    if resume and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    manifest.update(
        {
            "stage": "sft",
            "status": "running",
            **run_owner(),
            "started": manifest.get("started") or now(),
            "versions": library_versions(),
            "trainer_versions": versions,
            "device": device_kind(),
            "seed": config.seed,
            "model": {"reference": config.model, "path": str(resolved.path), "source": resolved.source},
            "dataset": {"reference": data.reference, **data.fingerprint},
        }
    )
    if resume_from:
        manifest.setdefault("resumed", []).append({"from": Path(resume_from).name, "at": now()})
    # Created only now: a model or dataset that fails to load leaves no empty folder behind.
    out.mkdir(parents=True, exist_ok=True)
    if main:
        write_text(out / "config.yaml", yaml.safe_dump(_config_record(config), sort_keys=False))
        write_text(manifest_path, json.dumps(manifest, indent=2))

    built = build_trainer(config, progress=progress, log=say, resolved_path=resolved.path, data=data)
    trainer, train, validation = built.trainer, built.train, built.validation
    has_eval = bool(validation.samples)
    timer = built.timer

    eval_before = None
    if has_eval and config.eval_at_start and resume_from is None:
        eval_before = trainer.evaluate()["eval_loss"]
        say(f"validation loss before training: {eval_before:.4f}")
        # Recorded now, so a run killed and resumed still reports its baseline.
        if main:
            write_text(out / "metrics.json", json.dumps({"status": "running", "eval_loss_before": eval_before}))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h]
    eval_final = None
    if has_eval:  # the validation loss at the last step: already computed if eval_steps divides it
        done = evals and evals[-1]["step"] == trainer.state.global_step
        eval_final = evals[-1]["eval_loss"] if done else trainer.evaluate()["eval_loss"]
    if eval_before is None:  # a resumed run: the baseline was logged by the first session
        recorded = (read_json(out / "metrics.json") or {}).get("eval_loss_before")
        eval_before = recorded if isinstance(recorded, float) else None
    tokens = int(trainer.state.num_input_tokens_seen - (timer.tokens_at_start or 0))
    metrics: dict[str, Any] = {
        "status": "finished",
        "out": str(out),
        "steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "train_loss": float(result.training_loss),
        "eval_loss_before": eval_before,
        "eval_loss": eval_final,
        "eval_losses": [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "train_losses": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "tokens_this_session": tokens,  # all processes together
        "train_seconds": round(timer.train_seconds, 2),
        "tokens_per_second": round(tokens / timer.train_seconds, 2) if timer.train_seconds else None,
        "wall_seconds": round(wall, 2),
        "resumed_from": Path(resume_from).name if resume_from else None,
        "processes": trainer.args.world_size,
        "packing_check": built.packing_check,
        "data": {"train": train.stats(), "validation": validation.stats()},
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    gathered = None
    if config.export and (sharded_training() or (config.lora is not None and config.lora.qlora)):
        # Every process takes part in gathering the shards; the first then exports from the saved folder. QLoRA
        # adapters go the same way: merged into an unquantized copy of the base, not into 4-bit weights.
        gathered = out / CHECKPOINTS / "final"
        trainer.save_model(str(gathered))
    if not trainer.is_world_process_zero():
        return metrics
    if config.export:
        results = {
            k: metrics[k] for k in ("eval_loss_before", "eval_loss", "train_loss", "steps") if metrics[k] is not None
        }
        card = sft_card(
            title=f"{out.resolve().name} (aloekit SFT)",
            base_model=base_model_id(config.model),
            datasets=source_datasets(data.train, data.reference),
            config=_config_record(config),
            results=results,
            lora=config.lora is not None,
            description=f"Supervised fine-tuning on {len(train.samples)} conversations from `{data.reference}` "
            f"(train sha256 {data.fingerprint['train_sha256'][:16]}).",
        )
        dtype = built.base_dtype if config.lora is not None else export_dtype(resolved.path)
        trained = trainer.model if gathered is None else reload_gathered(gathered, resolved.path, config)
        export_model(trained, trainer.processing_class, out / MODEL, base_path=resolved.path, card=card, dtype=dtype)
        metrics["model"] = str(out / MODEL)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    manifest.update({"status": "finished", "finished": now()})
    write_text(manifest_path, json.dumps(manifest, indent=2))
    return metrics


__all__ = [
    "CHECKPOINTS",
    "MODEL",
    "SFTRunConfig",
    "build_trainer",
    "complete_checkpoints",
    "debug_token_rows",
    "discard_incomplete_checkpoints",
    "load_chat_data",
    "tokenize_split",
    "train_sft",
]
