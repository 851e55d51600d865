"""The config of ``aloe train dpo``: :class:`DPORunConfig` (the run) and :class:`DPOStage` (one stage)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from aloekit.config import _Config, load_yaml
from aloekit.train.common import TrainConfig

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


class DPORunConfig(TrainConfig):
    """``aloe train dpo CONFIG``: the policy to start from and the DPO stages to run on it, in order; the common
    fields (model, out, lora, seed, precision...) are :class:`~aloekit.train.common.TrainConfig`'s."""

    record_order = (
        "model",
        "out",
        "stages",
        "lora",
        "per_device_batch_size",
        "gradient_accumulation",
        "warmup_ratio",
        "save_steps",
        "save_total_limit",
        "eval_steps",
        "ref_batch_size",
        "ref_cache_dir",
        "logging",
        "seed",
        "precision",
        "gradient_checkpointing",
        "allow_pickle",
        "trust_remote_code",
    )

    stages: tuple[DPOStage, ...] = Field(
        description="Stages in order; each starts from the previous one's model and uses it as its reference."
    )
    per_device_batch_size: int = Field(2, ge=1, description="Pairs per forward pass (each pair is 2 sequences).")
    gradient_accumulation: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on the validation pairs every N steps; they are always evaluated at the end."
    )
    ref_batch_size: int | None = Field(
        None, ge=1, description="Pairs per reference forward when the reference log-probs are computed."
    )
    ref_cache_dir: Path | None = Field(
        None, description="Where reference log-probs are cached (default $ALOE_HOME/refcache, shared by runs)."
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations in the backward pass to save memory. Default: on with a GPU (memory is "
        "the limit there), off on a CPU, where RAM is rarely the limit for models small enough to train on one "
        "and the recomputation costs about a third more time per step.",
    )

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
