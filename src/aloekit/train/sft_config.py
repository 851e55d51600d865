"""The config of ``aloe train sft`` (:class:`SFTRunConfig`) and the names of its output folders."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from aloekit.train.common import LoraSettings, TrainConfig, device_kind

CHECKPOINTS = "checkpoints"
MODEL = "model"


class SFTRunConfig(TrainConfig):
    """Supervised fine-tuning of a chat model on conversations (``aloe train sft CONFIG``); the common fields
    (model, out, lora, seed, precision...) are :class:`~aloekit.train.common.TrainConfig`'s."""

    record_order = (
        "model",
        "dataset",
        "out",
        "lora",
        "max_length",
        "packing",
        "learning_rate",
        "epochs",
        "max_steps",
        "per_device_batch_size",
        "gradient_accumulation",
        "warmup_ratio",
        "scheduler",
        "weight_decay",
        "max_grad_norm",
        "gradient_checkpointing",
        "eval_steps",
        "eval_at_start",
        "save_steps",
        "save_total_limit",
        "validation_fraction",
        "logging",
        "seed",
        "precision",
        "allow_pickle",
        "trust_remote_code",
        "export",
    )

    dataset: str = Field(
        description="Conversations in TRL's 'messages' layout: a data-stage folder (train.jsonl, validation.jsonl), "
        "a .jsonl file, or a Hub dataset id (org/name)."
    )
    max_length: int = Field(
        1024,
        ge=16,
        description="Most tokens per conversation (longer ones keep their start); with packing, tokens per packed row.",
    )
    packing: bool = Field(
        True,
        description="Pack several conversations per row (best-fit decreasing, the copies of one item in the same "
        "row where they fit, so a step's letter answers balance), padding-free, with position ids "
        "restarting per conversation so none attends to another. False: one padded conversation per row.",
    )
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training set (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to train for; overrides epochs.")
    per_device_batch_size: int = Field(
        4, ge=1, description="Rows per device per micro-batch (with packing, each row holds up to max_length tokens)."
    )
    gradient_accumulation: int = Field(4, ge=1, description="Micro-batches per optimizer step.")
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = no clipping).")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass to save memory, at ~30% more compute. Off by "
        "default: on a CPU and for small models memory is not the limit, so it only costs time; turn it on for "
        "large models on a GPU.",
    )
    eval_steps: int = Field(
        50, ge=1, description="Compute the validation loss every N optimizer steps (and at the end)."
    )
    eval_at_start: bool = Field(True, description="Also compute the validation loss before training (a baseline).")
    validation_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="For a single file or a Hub dataset without a validation split: share held out for validation.",
    )
    export: bool = Field(
        True, description="Write OUT/model: a standalone model folder (LoRA merged) with a model card."
    )

    @field_validator("lora")
    @classmethod
    def _qlora_needs_cuda(cls, lora: LoraSettings | None) -> LoraSettings | None:
        if lora is not None and lora.qlora and device_kind() != "cuda":
            raise ValueError("qlora needs a CUDA GPU and bitsandbytes: set qlora: false on this machine")
        return lora
