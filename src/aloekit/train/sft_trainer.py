"""Building SFT's trainer: the model loaded in the right dtype (4-bit for QLoRA), TRL's SFTConfig with aloekit's
defaults, the tokenized and masked data, the packed-attention check and the callbacks; and the token view
``--debug-tokens`` prints. :mod:`aloekit.train.sft` runs it.

torch, transformers and TRL are imported inside the functions: the config module importing this package must stay
fast to import (``aloe --help``, recipe loading).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.errors import UserError
from aloekit.train.callbacks import StepTimer, quiet_trainer, report_to, trainer_callbacks
from aloekit.train.common import precision_args, resolve_model
from aloekit.train.packed_attention import check_packed_attention
from aloekit.train.runfolder import read_json
from aloekit.train.sft_config import CHECKPOINTS, SFTRunConfig
from aloekit.train.sft_data import ChatData, TokenizedSplit, load_chat_data, tokenize_split
from aloekit.train.trl_compat import checkpointing_arg, sft_trainer_class, silence_batch_of_one_advice


def sharded_training() -> bool:
    """True under ``accelerate launch`` with DeepSpeed or FSDP, where each process holds a shard of the weights."""
    return any(os.environ.get(f"ACCELERATE_USE_{k}", "").lower() in ("1", "true") for k in ("DEEPSPEED", "FSDP"))


def load_model(config: SFTRunConfig, path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    precision = precision_args(config.precision)
    if config.lora is not None and config.lora.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise UserError("lora.qlora needs bitsandbytes: pip install bitsandbytes") from e
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        options["dtype"] = torch.bfloat16
    elif config.lora is not None and (precision["bf16"] or precision["fp16"]):
        # Frozen base weights in half precision save memory; the adapters stay fp32 (peft's default).
        options["dtype"] = torch.bfloat16 if precision["bf16"] else torch.float16
    else:
        options["dtype"] = torch.float32  # full fine-tuning keeps fp32 master weights (autocast does the rest)
    try:
        return AutoModelForCausalLM.from_pretrained(path, **options)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model {config.model} for training: {e}") from e


def sft_args(config: SFTRunConfig, *, has_eval: bool, progress: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(config.out / CHECKPOINTS),
        # Conversations arrive tokenized, truncated and (with packing) already packed by TokenizedSplit
        # .packed_columns, which keeps an item's copies in one row; TRL's collator reads their seq_lengths.
        max_length=None,
        packing=False,
        padding_free=config.packing,
        eval_packing=False,
        shuffle_dataset=False,  # the sampler shuffles (seeded), which resume replays exactly
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps in transformers 5
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        **checkpointing_arg(SFTConfig, config.gradient_checkpointing),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging.steps,
        report_to=report_to(config.logging),
        seed=config.seed,
        data_seed=config.seed,
        # Padding-free rows hold no padding, and the pad token (often the end-of-turn token) occurs in the data,
        # so count every token there; padded rows count their attention mask.
        include_num_input_tokens_seen="all" if config.packing else "non_padding",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **precision_args(config.precision),
    )


@dataclass
class BuiltTrainer:
    """An SFTTrainer ready to train, with the tokenized splits it was given."""

    trainer: Any
    train: TokenizedSplit
    validation: TokenizedSplit
    timer: StepTimer
    base_dtype: Any
    packing_check: dict[str, float] | None


def build_trainer(
    config: SFTRunConfig,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    resolved_path: Path | None = None,
    data: ChatData | None = None,
) -> BuiltTrainer:
    """Tokenize and mask the data, load the model, check packed attention and build TRL's SFTTrainer.

    Creates only the (empty) checkpoints folder in ``config.out``: the trainer fills it once it trains.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed

    say = log or (lambda message: None)
    if resolved_path is None:
        resolved_path = resolve_model(
            config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
        )
    if data is None:
        data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolved_path, trust_remote_code=config.trust_remote_code)
    say(f"tokenizing {len(data.train)} training and {len(data.validation)} validation conversations")
    train = tokenize_split(tokenizer, data.train, max_length=config.max_length, name="train")
    validation = tokenize_split(tokenizer, data.validation, max_length=config.max_length, name="validation")
    if not train.samples:
        raise UserError(f"no training conversation has a trained token within max_length {config.max_length}")

    has_eval = bool(validation.samples)
    # The training arguments come before the model: under DeepSpeed ZeRO-3 they make from_pretrained shard it.
    args = sft_args(config, has_eval=has_eval, progress=progress)
    model = load_model(config, resolved_path)
    base_dtype = model.dtype
    packing_check = None
    if config.packing and not sharded_training():
        # Sharded weights (ZeRO-3, FSDP) only come together inside the trainer: the check runs unsharded only.
        packing_check = check_packed_attention(model)

    timer = StepTimer()
    callbacks = trainer_callbacks(config.logging, config.out, timer)
    silence_batch_of_one_advice()  # rows arrive packed: TRL's advice for one conversation per row does not apply
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(train.dataset_columns(config.max_length, config.packing)),
        eval_dataset=Dataset.from_dict(validation.dataset_columns(config.max_length, config.packing))
        if has_eval
        else None,
        processing_class=tokenizer,
        peft_config=config.lora.peft_config() if config.lora is not None else None,
        callbacks=callbacks,
    )
    quiet_trainer(trainer, progress)
    return BuiltTrainer(trainer, train, validation, timer, base_dtype, packing_check)


def debug_token_rows(config: SFTRunConfig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` training conversations as ``[(token text, trained), ...]`` (no model is loaded)."""
    from transformers import AutoTokenizer

    resolved = models.resolve(
        config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=config.trust_remote_code)
    data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    split = tokenize_split(tokenizer, data.train, max_length=config.max_length, limit=n)
    rows = []
    for sample_id, sample in zip(split.ids, split.samples, strict=True):
        tokens = [
            (tokenizer.decode([t], skip_special_tokens=False), keep)
            for t, keep in zip(sample.input_ids, sample.trained, strict=True)
        ]
        rows.append({"id": sample_id, "tokens": tokens, "trained": sample.n_trained, "length": len(tokens)})
    return rows


def export_dtype(folder: Path) -> Any:
    """The dtype a full fine-tune is exported in: the one the base folder's config declares (bf16 base -> bf16
    export), float32 when it declares none."""
    import torch

    config = read_json(folder / "config.json") or {}
    name = config.get("dtype") or config.get("torch_dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else torch.float32


def reload_gathered(saved: Path, base: Path, config: SFTRunConfig) -> Any:
    """The model ``trainer.save_model`` gathered from shards: full weights, or the base plus saved adapters."""
    import torch
    from transformers import AutoModelForCausalLM

    if config.lora is None:
        return AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=config.trust_remote_code)
    return PeftModel.from_pretrained(model, saved)
