"""What SFT and DPO share: the version guard, model loading through our secure resolver, LoRA settings,
precision and logging choices that TRL's defaults get wrong on a CPU, and the config pieces both stages use.

aloekit wraps TRL thinly: these helpers only build the arguments TRL's trainers take.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from aloekit.config import _Config
from aloekit.errors import UserError

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


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16), where bf16 autocast is a speed-up.

    Without it, torch emulates bf16 on a CPU and autocast is slower than fp32, so it is refused rather than
    quietly slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


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


@contextlib.contextmanager
def score_trained_positions_only() -> Iterator[None]:
    """Project only the trained positions (labels not -100) through the LM head, on CPU as TRL does on CUDA.

    TRL's fused LM head (``fused_lm_head=True``) gathers the positions whose label is not -100 before the
    vocabulary projection only on Triton devices; elsewhere it keeps tile shapes fixed for compilers (Neuron) and
    projects every prompt and padding position through the 49k-wide head, then discards them. Eager CPU has no
    compiled shapes to protect. The completions' log-probs are the same rows of the same product; only the
    discarded work goes: about a fifth of a DPO step on SmolLM2, whose prompts are half the tokens, and about a
    third of an answer-only SFT step, where one answer letter follows a whole question (TRL 1.16's switch)."""
    from trl.trainer import utils

    original = getattr(utils, "_use_triton", None)
    if original is None:  # a TRL without the switch keeps its own behaviour; only speed depends on it
        yield
        return
    utils._use_triton = lambda device: device.type == "cpu" or original(device)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        utils._use_triton = original  # type: ignore[attr-defined]


# --- who owns a run folder ---------------------------------------------------------------------------------------


def run_owner() -> dict[str, Any]:
    """The process writing a run, recorded in its manifest so a later run can tell a live run from a dead one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def abandoned(manifest: Mapping[str, Any] | None) -> str | None:
    """Why the run recorded in ``manifest`` is over though not finished (it failed, or its process is gone), or
    None when it finished, may still be running, or cannot be told (another host, a manifest without a pid)."""
    if not manifest:
        return None
    status = manifest.get("status")
    if status == "failed":
        return f"it failed ({manifest.get('error') or 'no reason recorded'})"
    if status != "running":
        return None
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return f"its process {pid} on {host} is gone"
    except PermissionError:  # alive, owned by another user
        return None
    return None
