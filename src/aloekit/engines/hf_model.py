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
    model.set_output_embeddings(_linear_in(head, torch.float32))


def bf16_linears(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` (float32) with every linear layer but the output head computing in bf16 from bf16 copies of its
    weights, and everything between them (residual stream, norms, attention scores, head) left in float32.

    Why not ``model.to(torch.bfloat16)``: rounding the residual stream at every layer doubles the error. Measured
    on SmolLM2-135M, 240 MedMCQA validation questions, the answer letters' log-likelihoods against float32: all bf16
    max 0.45 nats (44.5 questions/s), bf16 linears 0.26 (40.3/s), float32 19.2/s. Modifies ``model`` in place.
    """
    import torch

    head = model.get_output_embeddings()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child is not head:
                setattr(module, name, _linear_in(child, torch.bfloat16))
    return model


def _linear_in(linear: torch.nn.Linear, dtype: torch.dtype) -> torch.nn.Module:
    """``x @ W.T (+ b)`` computed in ``dtype`` from ``dtype`` copies of the weights, the result in float32 (torch is
    imported lazily here)."""
    import torch

    class CastLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
            bias = linear.bias
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().to(dtype), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x.to(dtype), self.weight, self.bias).float()

    return CastLinear()


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
