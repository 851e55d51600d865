"""What SFT and DPO configs share: :class:`TrainConfig` (the common fields and their defaults), the version guard,
model loading through our secure resolver, LoRA settings, and the precision and logging choices that TRL's
defaults get wrong on a CPU.

aloekit wraps TRL thinly: these helpers only build the arguments TRL's trainers take. The run folder (claiming it,
manifests, checkpoints) is :mod:`aloekit.train.runfolder`; callbacks are :mod:`aloekit.train.callbacks`.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from aloekit.config import _Config
from aloekit.errors import UserError
from aloekit.hardware import cpu_supports_bf16

# Versions the wrappers were written and tested against. TRL renames arguments between minor releases
# (max_seq_length -> max_length, ...), so anything outside these ranges is refused with a clear message
# rather than failing deep inside a trainer.
SUPPORTED = {
    "trl": ((1, 0), (2, 0)),
    "transformers": ((5, 0), (6, 0)),
    "peft": ((0, 17), (1, 0)),
    "accelerate": ((1, 0), (2, 0)),
}


def _version_tuple(version: str) -> tuple[int, int]:
    parts = [int("".join(c for c in piece if c.isdigit()) or 0) for piece in version.split(".")[:2]]
    major, minor = [*parts, 0, 0][:2]
    return major, minor


def check_versions(packages: dict[str, tuple[tuple[int, int], tuple[int, int]]] | None = None) -> dict[str, str]:
    """The installed versions of TRL, transformers, peft and accelerate, or a UserError naming the one outside
    its supported range and the pip command that fixes it."""
    found: dict[str, str] = {}
    for package, (low, high) in (packages or SUPPORTED).items():
        spec = f"{package}>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError as e:
            raise UserError(f"{package} is not installed: pip install '{spec}'") from e
        if not low <= _version_tuple(version) < high:
            raise UserError(f"{package} {version} is not supported by aloekit's trainers: pip install '{spec}'")
        found[package] = version
    return found


class LoraSettings(_Config):
    """LoRA adapters (peft). Leave ``lora`` unset in a training config for full fine-tuning."""

    r: int = Field(16, ge=1, description="Rank of the adapters.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (effective scale alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: tuple[str, ...] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )
    qlora: bool = Field(
        False, description="Load the base model in 4-bit (bitsandbytes, CUDA only) and train adapters on top."
    )

    def peft_config(self, task_type: str = "CAUSAL_LM") -> Any:
        from peft import LoraConfig

        targets: Any = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets, task_type=task_type
        )


class Logging(_Config):
    """Where training curves go. TensorBoard by default (files next to the checkpoints); W&B when asked."""

    tensorboard: bool = Field(True, description="Write TensorBoard event files under OUT/runs.")
    wandb: bool = Field(False, description="Also log to Weights & Biases (needs `pip install wandb` and a login).")
    steps: int = Field(10, ge=1, description="Log every N optimizer steps.")

    def report_to(self) -> list[str]:
        targets = []
        if self.tensorboard:
            targets.append("tensorboard")
        if self.wandb:
            try:
                metadata.version("wandb")
            except metadata.PackageNotFoundError as e:
                raise UserError("logging.wandb is on but wandb is not installed: pip install wandb") from e
            targets.append("wandb")
        return targets


def device_kind() -> Literal["cuda", "cpu"]:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


Precision = Literal["auto", "fast", "fp32", "bf16", "fp16"]
"""Training precision. auto: bf16 on a GPU that supports it, fp32 otherwise. fast: bf16 wherever the hardware
computes it natively (such a GPU, or a CPU with AVX512-BF16 / AMX), fp32 elsewhere."""


def precision_args(precision: Precision) -> dict[str, Any]:
    """TrainingArguments precision flags. TRL 1.16's configs default to bf16=True, which fails on a CPU
    ("Your setup doesn't support bf16/gpu"): 'auto' means bf16 on a GPU that supports it, fp32 otherwise.

    bf16 on a CPU is bf16 *autocast* (fp32 master weights and optimizer, matrix products in bf16), allowed where
    the CPU computes bf16 natively: measured on SmolLM2-135M on a 2-core AVX512-BF16 CPU it trains ~2x more tokens
    per second than fp32 (bench/train_precision.py). It is opt-in ('auto' stays fp32 on a CPU) because its
    results differ from fp32's in the last bits."""
    import torch

    if precision in ("auto", "fast"):
        gpu_bf16 = device_kind() == "cuda" and torch.cuda.is_bf16_supported()
        cpu_bf16 = precision == "fast" and device_kind() == "cpu" and cpu_supports_bf16()
        precision = "bf16" if gpu_bf16 or cpu_bf16 else "fp32"
    if device_kind() == "cpu":
        if precision == "fp16":
            raise UserError("precision fp16 needs a GPU here: use precision: fp32 (or bf16 on a CPU with AVX512-BF16)")
        if precision == "bf16" and not cpu_supports_bf16():
            raise UserError(
                "precision bf16 on a CPU needs AVX512-BF16 or AMX (this CPU has neither): use precision: fp32"
            )
    return {"bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": device_kind() == "cpu"}


def resolve_model(ref: str, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> Path:
    """A model reference (alias, folder, .gguf, Hub id) as a local safetensors folder, through aloekit's
    resolver: safetensors only and no remote code unless the user opted in."""
    from aloekit import models

    return models.resolve(ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code).path


def resolved_precision(precision: Precision) -> Literal["bf16", "fp16", "fp32"]:
    """What ``precision`` means on this machine (see :func:`precision_args`)."""
    flags = precision_args(precision)
    return "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"


class TrainConfig(_Config):
    """The fields every training config (``aloe train sft``, ``aloe train dpo``) has, with one default each.

    Subclasses add their own fields and list every field in :attr:`record_order`: the order the run records
    (``config.yaml``, the model card's settings table, DPO's ``config_sha256``) have always used, so moving a field
    into this base class changes no output byte.
    """

    record_order: ClassVar[tuple[str, ...]] = ()

    model: str = Field(
        description="Model to start from: alias (smollm2-135m-instruct), folder, .gguf file or Hub id (for DPO, "
        "usually an SFT result)."
    )
    out: Path = Field(description="Folder for checkpoints, logs, records and the trained model.")
    lora: LoraSettings | None = Field(
        None, description="LoRA adapters (merged into the saved model); leave unset for full fine-tuning."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    save_steps: int = Field(100, ge=1, description="Save a checkpoint every N optimizer steps (for --resume).")
    save_total_limit: int | None = Field(
        2, ge=1, description="Checkpoints kept (the most recent ones; per stage in DPO); null keeps every one."
    )
    logging: Logging = Field(default_factory=Logging, description="Where training curves go.")
    # 0, as every recipe (recipes/*.yaml) and the docs use: SFT used to default to 42 and DPO to 0.
    seed: int = Field(0, description="Seed for adapter initialisation, data order and dropout.")
    precision: Precision = Field(
        "auto",
        description="auto: bf16 on a GPU that supports it, fp32 otherwise (TRL's bf16 default fails on a CPU). "
        "fast: bf16 also on a CPU with AVX512-BF16/AMX (autocast, ~2x fp32 there), fp32 elsewhere. bf16 on a CPU "
        "without them is refused.",
    )
    allow_pickle: bool = Field(False, description="Allow pickle weights (.bin/.pt), which can run code on load.")
    trust_remote_code: bool = Field(False, description="Run the model's own Python code (config auto_map).")

    @model_serializer(mode="wrap")
    def _in_record_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        ordered = {name: data[name] for name in self.record_order if name in data}
        return {**ordered, **data}
