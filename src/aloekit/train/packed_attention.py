"""The proof that packing is safe for a model: a padding-free packed batch must give the same logits as each of
its conversations run alone, i.e. no token attends to another conversation in its row.

transformers 5 turns restarting position ids (with no attention mask) into a block-diagonal causal mask for sdpa
and eager attention (and into varlen kernels for flash attention); a model or kernel that ignores them would
silently train across conversations, so SFT checks the actual model before training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aloekit.errors import UserError
from aloekit.train.trl_compat import attention_implementation


def packed_forward_matches(
    model: Any, lengths: Sequence[int] = (9, 14, 6), vocab: int | None = None
) -> dict[str, float]:
    """Run a padding-free packed batch (TRL's collator) and each example separately through ``model``.

    Returns the largest logit difference between the two (``separate``) and, for scale, between the packed run
    and a plain causal run over the concatenation (``contaminated``: what attention across examples gives).
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    generator = torch.Generator().manual_seed(0)
    high = min(vocab or model.config.get_text_config().vocab_size, 2000)
    seqs = [torch.randint(10, high, (n,), generator=generator).tolist() for n in lengths]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s, "labels": s} for s in seqs]
    )
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(**inputs, use_cache=False).logits[0].float()
            separate = torch.cat(
                [model(input_ids=torch.tensor([s], device=device), use_cache=False).logits[0].float() for s in seqs]
            )
            plain = model(
                input_ids=inputs["input_ids"],
                position_ids=inputs["position_ids"],
                attention_mask=torch.ones_like(inputs["input_ids"]),
                use_cache=False,
            ).logits[0]
    finally:
        model.train(was_training)
    return {
        "separate": float((packed - separate).abs().max()),
        "contaminated": float((plain.float() - separate).abs().max()),
    }


def check_packed_attention(model: Any) -> dict[str, float]:
    """Refuse to pack for a model whose attention lets packed examples see each other."""
    diffs = packed_forward_matches(model)
    exact = diffs["separate"] <= 1e-3
    clearly_isolated = diffs["separate"] * 10 < diffs["contaminated"]
    if not (exact or clearly_isolated):
        impl = attention_implementation(model)
        raise UserError(
            f"packing is unsafe for this model: with attention '{impl}', packed examples attend to each other "
            f"(logits differ by {diffs['separate']:.3g} from separate runs); set packing: false in the SFT config"
        )
    return diffs
