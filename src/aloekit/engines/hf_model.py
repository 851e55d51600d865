"""Loading details of the transformers backend: compute dtype, end-of-sequence ids, the fp32 output head and
sliding-window detection."""

from __future__ import annotations

import functools
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


def bf16_blocks(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` (float32) with every decoder layer's attention and MLP blocks computing in bf16 from bf16 copies of
    their weights, and the residual stream, the norms before each block, the embeddings and the output head left in
    float32. Each block's input is rounded to bf16 once and its output returned in float32.

    Why blocks, not single linear layers or the whole model: on a CPU with AMX a bf16 matrix product is about 7x a
    float32 one, so once the products are bf16 the time goes to what lies between them. Measured on SmolLM2-135M,
    8 prompts x 350 tokens, 2 cores: float32 2.8 s; bf16 linear layers 1.7 s (a cast before and after each of 7
    linear layers, and float32 attention, RoPE, SiLU and products then take 60%); bf16 blocks 0.85 s; the whole
    model in bf16 0.71-0.86 s, but rounding the residual stream at every layer doubles the error of bf16 linears
    (earlier probe, 240 MedMCQA validation questions: 0.45 nats against 0.26), where the blocks stray 1.2-1.7x as
    much as linears (bench/checked_scoring.py, bench/RESULTS.md). The fp32 weights of the model stay untouched:
    each block is copied into fresh bf16 tensors. Modifies ``model``'s module tree in place.
    """
    import copy

    import torch

    block = _bf16_block_class()
    for layer in _decoder_layers(model):
        for name in ("self_attn", "mlp"):
            inner = getattr(layer, name, None)
            if not isinstance(inner, torch.nn.Module):
                raise UserError(
                    f"scoring checked-bf16 runs each decoder layer's 'self_attn' and 'mlp' in bf16, but "
                    f"{type(layer).__name__} has no '{name}'; use scoring exact"
                )
            # Fresh bf16 tensors in the memo: the copy never holds (or converts in place) the float32 ones.
            memo: dict[int, Any] = {id(b): _bf16(b) for b in inner.buffers()}
            memo.update({id(p): torch.nn.Parameter(_bf16(p), requires_grad=False) for p in inner.parameters()})
            setattr(layer, name, block(copy.deepcopy(inner, memo)))
    return model


def _decoder_layers(model: PreTrainedModel) -> list[Any]:
    """The decoder layers of a transformers causal LM (``model.model.layers`` and its multimodal variants)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for holder in (decoder, getattr(decoder, "language_model", None)):
        layers = getattr(holder, "layers", None)
        if layers is not None and len(layers):
            return list(layers)
    raise UserError(
        f"scoring checked-bf16 needs the decoder layers of {type(model).__name__} (model.layers); use scoring exact"
    )


def _bf16(tensor: torch.Tensor) -> torch.Tensor:
    """A bf16 copy of a floating-point tensor (a clone of any other)."""
    import torch

    return tensor.detach().to(torch.bfloat16) if tensor.is_floating_point() else tensor.detach().clone()


@functools.cache
def _bf16_block_class() -> type:
    """The block wrapper's class, made once (torch is imported lazily here)."""
    import torch

    class Bf16Block(torch.nn.Module):
        """A bf16 attention or MLP block between float32 residuals: the input and the rotary tables rounded once,
        the output back in float32 (keys and values cached by the block stay bf16)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            rotary = kwargs.get("position_embeddings")
            if rotary is not None:
                kwargs["position_embeddings"] = tuple(t.to(torch.bfloat16) for t in rotary)
            out = self.inner(hidden_states.to(torch.bfloat16), *args, **kwargs)
            if isinstance(out, tuple):
                return (out[0].float(), *out[1:])
            return out.float()

    return Bf16Block


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
