"""Loading details of the transformers backend: compute dtype, end-of-sequence ids, the fp32 output head and
sliding-window detection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aloekit.errors import UserError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-generation ids: the generation config's (chat models often list several) plus the tokenizer's."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in configured if isinstance(configured, list) else [configured]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise UserError("the model defines no end-of-sequence token (eos_token_id); set one in generation_config.json")
    return ids


def _output_head_in_fp32(model: PreTrainedModel) -> None:
    """Compute a half-precision model's logits in fp32 (the body stays in bf16/fp16, the speed is the same).

    Why: bf16 logits of magnitude 16-32 are spaced 0.125 apart. Measured on SmolLM2-135M after SFT, the four
    answer letters' log-likelihoods tied exactly on 23% of MedMCQA validation questions, and a tie goes to the first
    option: an "A" bias made by the number format, not by the model. An fp32 head gives every option its own
    score. The head's weight is copied once in fp32 (for tied embeddings this unties only the copy used for
    logits; 113 MB for SmolLM2's 49k x 576 head).
    """
    import torch

    head = model.get_output_embeddings()
    if head is None or not isinstance(head, torch.nn.Linear) or head.weight.dtype == torch.float32:
        return
    model.set_output_embeddings(_fp32_head(head))


def _fp32_head(linear: torch.nn.Linear) -> torch.nn.Module:
    """``hidden @ W.T (+ b)`` in fp32, with fp32 copies of the weights (torch is imported lazily here)."""
    import torch

    class Fp32Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(linear.weight.detach().float(), requires_grad=False)
            bias = linear.bias
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), requires_grad=False)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)

    return Fp32Head()


def _dtype(name: str, device: str) -> torch.dtype:
    import torch

    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # CPU half precision is slow and lossy on most CPUs
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise UserError(f"unknown dtype '{name}': choose auto, float32, bfloat16 or float16")
    return table[name]


def _has_sliding_window(config: Any) -> bool:
    config = getattr(config, "text_config", None) or config
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return any("sliding" in str(t) for t in layer_types)
    return getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
