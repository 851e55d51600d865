"""Pydantic configs, one per stage, each field documented. YAML recipes and CLI flags both build these, so a
stage behaves the same whichever way it was started, and every run records the config it ran with."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Config(BaseModel):
    # Unknown keys are typos in a recipe: refuse them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MCQAConfig(_Config):
    """Medical multiple-choice evaluation (``aloe eval``)."""

    benchmarks: tuple[str, ...] = Field(description="Benchmark or group names, e.g. ('mmlu_anatomy', 'multimedqa').")
    mode: Literal["loglik", "generate"] = Field(
        "loglik",
        description="'loglik' scores each option's log-likelihood (lm-eval's prompts and acc/acc_norm); "
        "'generate' lets the model answer in the chat template and extracts 'Answer: X'.",
    )
    data_dir: Path | None = Field(
        None, description="Folder laid out like shared/data; None loads every benchmark from the Hugging Face Hub."
    )
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N questions of each benchmark.")
    num_fewshot: int = Field(0, ge=0, description="Solved examples before each question (from the few-shot split).")
    cot: bool = Field(False, description="generate mode: ask for step-by-step reasoning before the answer.")
    max_tokens: int | None = Field(
        None, ge=1, description="generate mode: most new tokens per answer (default 32, or 512 with cot)."
    )
    seed: int = Field(0, description="Seed for sampling and for the bootstrap confidence intervals.")
    checkpoint_every: int = Field(
        64, ge=1, description="Questions scored between two cache writes: a killed run loses at most this many."
    )

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @property
    def new_tokens(self) -> int:
        return self.max_tokens or (512 if self.cot else 32)
