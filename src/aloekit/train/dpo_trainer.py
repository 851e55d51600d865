"""One DPO stage's trainer: the policy in its dtype, the reference log-probability cache keyed by everything
the values depend on, TRL's DPOConfig with aloekit's defaults and the callbacks; the metrics a stage records; and
the token view ``--debug-tokens`` prints. :mod:`aloekit.train.dpo` runs the stages.

torch, transformers and TRL are imported inside the functions: the configs importing this package must stay fast
to import.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.errors import UserError
from aloekit.train import refcache
from aloekit.train.callbacks import StepTimer, quiet_libraries, quiet_trainer, report_to, trainer_callbacks
from aloekit.train.common import check_versions, device_kind, precision_args, resolved_precision
from aloekit.train.dpo_config import DPORunConfig, DPOStage
from aloekit.train.dpo_data import (
    Pairs,
    one_layout,
    pair_group,
    read_pairs,
    stage_pairs,
    train_rows,
)
from aloekit.train.trl_compat import checkpointing_arg, dpo_trainer_class, prepare_dpo_dataset, reference_hash


def say(progress: bool, message: str) -> None:
    """A stage message on stderr, shown with the progress bars only."""
    if progress:
        print(message, file=sys.stderr)


def policy_dtype(precision: str, *, lora: bool) -> str:
    """The dtype the policy's weights are held in. Full fine-tuning keeps fp32 master weights and lets autocast
    compute in bf16, as SFT does: weights held in bf16 lose every update smaller than ~1/256 of their value, which at
    DPO's learning rates is nearly all of them (measured: a 40-step stage moved the weights by 5e-5 relative).
    Frozen LoRA base weights can be bf16."""
    return "bfloat16" if precision == "bf16" and lora else "float32"


def build_stage_trainer(
    config: DPORunConfig,
    stage: DPOStage,
    pairs: Pairs,
    policy: models.ResolvedModel,
    policy_fingerprint: str,
    stage_dir: Path,
    progress: bool,
) -> tuple[Any, refcache.RefCache, Any, StepTimer, int]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    tokenizer = stage_tokenizer(policy, config)
    precision = resolved_precision(config.precision)
    dtype = getattr(torch, policy_dtype(precision, lora=config.lora is not None))
    model = AutoModelForCausalLM.from_pretrained(policy.path, dtype=dtype, trust_remote_code=config.trust_remote_code)

    used, total = train_rows(config, stage, pairs.train, tokenizer)
    if len(used) < total:
        say(progress, f"stage {stage.name}: {stage.max_steps} steps use {len(used)} of {total} pairs")
    train = Dataset.from_list([{k: v for k, v in row.items() if k != "id"} for row in used])  # TRL gets pairs alone
    validation = Dataset.from_list(one_layout(read_pairs(pairs.validation), tokenizer)) if pairs.validation else None

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
            dataset_sha256=pairs.train_sha256 if len(used) == total else f"{pairs.train_sha256}:{len(used)}",
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
        **checkpointing_arg(DPOConfig, gradient_checkpointing),
        logging_steps=config.logging.steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if validation is not None and config.eval_steps else "no",
        eval_steps=config.eval_steps,
        report_to=report_to(config.logging),
        seed=config.seed,
        disable_tqdm=not progress,
        trust_remote_code=config.trust_remote_code,
        **precision_args(config.precision),
    )
    timer = StepTimer()
    callbacks = trainer_callbacks(config.logging, stage_dir, timer)

    say(
        progress,
        f"stage {stage.name}: {len(train)} pairs; reference log-probs "
        + ("cached" if cache.complete() else "computed once, then cached"),
    )
    with quiet_libraries(progress), reference_hash(policy_fingerprint):
        trainer = dpo_trainer_class()(
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
    quiet_trainer(trainer, progress)
    # The training file's size too: TRL counts epochs over the pairs it is handed (cut to what max_steps uses).
    return trainer, cache, tokenizer, timer, total


_SUMMARY_KEYS = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
)


def stage_metrics(
    history: list[dict[str, Any]], train: dict[str, Any], evaluation: dict[str, Any], timer: StepTimer
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


def debug_token_rows(config: DPORunConfig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` pairs of each stage exactly as TRL's DPOTrainer tokenizes and truncates them, as rows of
    ``[(token text, scored), ...]``: one row for prompt + chosen and one for prompt + rejected; the reply tokens,
    whose log-probabilities DPO compares, are flagged. Pairs TRL would drop (prompt filling max_length) are
    left out. No model is loaded and nothing is written."""
    from datasets import Dataset

    start = models.resolve(config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code)
    tokenizer = stage_tokenizer(start, config)
    rows: list[dict[str, Any]] = []
    for stage in config.stages:
        used, _ = train_rows(config, stage, stage_pairs(stage).train, tokenizer)
        dataset = Dataset.from_list(used[:n])
        with quiet_libraries(False):
            tokenized = prepare_dpo_dataset(dataset, tokenizer, stage.max_length)
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


def stage_tokenizer(model: models.ResolvedModel, config: DPORunConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=config.trust_remote_code)
    if not tokenizer.chat_template:
        raise UserError(
            f"model {model.path} has no chat template: DPO renders each pair in the model's chat format; "
            "start from an instruct or SFT model"
        )
    return tokenizer


def free_memory() -> None:
    """Let the next stage load its policy into the memory this stage's trainer held."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
