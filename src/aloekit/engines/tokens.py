"""How prompts become token ids, shared by every local backend so hf and vllm see the same tokens.

The rules follow lm-evaluation-harness, so our scores are comparable with its: trailing spaces of a context
move to the continuation, the pair is encoded whole, and the context's own encoding decides where the
continuation starts. BOS is added only for model families trained to expect it (Gemma), as lm-eval does;
chat templates write their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aloekit.engines.base import GenerationRequest
from aloekit.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BOS_FAMILIES = ("gemma",)


class PromptEncoder:
    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, *, model_id: str, model_type: str, add_bos: bool | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.add_bos = model_type.startswith(BOS_FAMILIES) if add_bos is None else add_bos

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def prefix(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [int(bos)] if self.add_bos and bos is not None else []

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """Token ids the model sees for a request: the chat template for messages, the raw text otherwise."""
        if request.messages is None:
            return self.prefix() + self.encode(request.prompt or "")
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(
                f"model '{self.model_id}' has no chat template, so chat messages cannot be rendered; "
                "send a raw prompt (--raw) or use a model folder with chat_template.jinja"
            )
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        # The template writes any BOS itself; encoding must not add a second one.
        return self.encode(str(text))

    def encode_pair(self, context: str, continuation: str, *, fallback_start: int) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) whose concatenation is the whole pair's encoding.

        ``fallback_start`` conditions the first token when the context is empty (BOS, else EOS, as lm-eval).
        """
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        prefix = self.prefix()
        whole = prefix + self.encode(context + continuation)
        if context:
            ctx = prefix + self.encode(context)
            cont = whole[len(ctx) :]
        else:
            ctx = [fallback_start]
            cont = whole[len(prefix) :]
        if not cont:
            raise UserError(f"continuation {continuation!r} encodes to no tokens after context {context[-40:]!r}")
        return ctx, cont
