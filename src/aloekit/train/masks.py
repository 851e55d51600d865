"""Answer-only loss masks, built from the chat template itself and checked.

TRL's ``assistant_only_loss`` needs a chat template with ``{% generation %}`` markers, which most shipped
templates (SmolLM2's among them) lack. Instead of patching templates, aloekit finds each assistant turn's tokens
by rendering prefixes of the conversation:

* ``before = render(messages[:i], add_generation_prompt=True)``: everything up to where the model starts writing
  turn ``i`` (the template's assistant header included);
* ``after = render(messages[:i + 1])``: the same conversation with turn ``i`` written.

``after[len(before):]`` is turn ``i`` as the template renders it: the content, the end-of-turn token and any
separator the template adds after it. Both renders must be true prefixes of the full conversation's tokens; a
template that renders a message differently depending on what follows (drops earlier reasoning, marks the last
turn...) or tokens that merge across the boundary make that false, and we refuse the template with a
:class:`~aloekit.errors.UserError` rather than train on a silently shifted mask.

What is trained (label = token id; everything else is -100):

* every assistant turn's content, in every turn of a multi-turn conversation;
* the end-of-turn token that closes it (``<|im_end|>`` for ChatML templates, or whichever of ``stop_ids`` the
  template writes first), **so the model learns to stop**;
* not the template's separator after that token (``"\\n"`` in ChatML): at inference, generation ends at the stop
  token, so nothing after it is ever generated.

If a turn's rendering contains none of ``stop_ids`` (a template that closes turns in the next message's header),
the whole rendered turn is trained.

Every mask is checked: each sample has at least one trained token, and each turn's trained tokens decode back to
that turn's content (plus the stop token). All functions here are pure: tokenizer and messages in, lists out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aloekit.errors import UserError

IGNORE = -100
"""Label of a token that is not trained (PyTorch's cross-entropy ignore index)."""


@dataclass(frozen=True)
class MaskedSample:
    """One conversation as tokens, with the tokens the loss is computed on."""

    input_ids: list[int]
    trained: list[bool]
    """Per token: True where the model is trained to produce it (assistant content and end-of-turn)."""
    spans: list[tuple[int, int]] = field(default_factory=list)
    """Trained token ranges ``[start, end)``, one per assistant turn."""

    @property
    def labels(self) -> list[int]:
        return [t if keep else IGNORE for t, keep in zip(self.input_ids, self.trained, strict=True)]

    @property
    def n_trained(self) -> int:
        return sum(self.trained)

    def truncated(self, max_length: int) -> MaskedSample:
        """The first ``max_length`` tokens (keep-start truncation), spans clipped."""
        if len(self.input_ids) <= max_length:
            return self
        spans = [(s, min(e, max_length)) for s, e in self.spans if s < max_length]
        return MaskedSample(self.input_ids[:max_length], self.trained[:max_length], spans)


def stop_token_ids(tokenizer: Any, extra: Iterable[int] = ()) -> frozenset[int]:
    """Token ids that end an assistant turn: the tokenizer's eos and ``extra`` (a generation config's eos ids)."""
    ids = {int(i) for i in extra if i is not None}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool) -> list[int]:
    try:
        out = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
        )
    except Exception as e:  # jinja raises its own errors (raise_exception in templates, undefined variables...)
        raise UserError(f"the chat template cannot render this conversation: {e}") from e
    return list(out["input_ids"])


def _is_prefix(short: Sequence[int], long: Sequence[int]) -> bool:
    return len(short) <= len(long) and list(long[: len(short)]) == list(short)


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def mask_conversation(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], *, stop_ids: frozenset[int] | None = None, where: str = ""
) -> MaskedSample:
    """Tokenize ``messages`` with the tokenizer's chat template and mark the assistant tokens to train.

    Raises :class:`UserError` naming ``where`` (a file and line, a sample id) when the conversation has no
    assistant turn, when the template is not prefix-stable, or when the mask fails its checks.
    """
    at = f"{where}: " if where else ""
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError(
            f"{at}the tokenizer has no chat template: use an instruct model's tokenizer, or add a template "
            "(tokenizer.chat_template) before training on conversations"
        )
    stops = stop_token_ids(tokenizer) if stop_ids is None else stop_ids
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not turns:
        raise UserError(f"{at}the conversation has no assistant message, so nothing would be trained")
    if turns[0] == 0:
        raise UserError(f"{at}the conversation starts with an assistant message: put a user message first")

    full = _render(tokenizer, messages, generation_prompt=False)
    trained = [False] * len(full)
    spans: list[tuple[int, int]] = []
    for i in turns:
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        after = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        for part, name in ((before, "the prompt with the generation prompt"), (after, "the conversation up to it")):
            if not _is_prefix(part, full):
                k = _first_difference(part, full)
                raise UserError(
                    f"{at}the chat template is not prefix-stable: rendering {name} (message {i}) gives tokens "
                    f"that differ from the full conversation at token {k} "
                    f"({tokenizer.decode(part[k : k + 8])!r} vs {tokenizer.decode(full[k : k + 8])!r}); "
                    "the template renders a message differently depending on what follows it, or tokens merge "
                    "across the turn boundary, so assistant tokens cannot be located: fix the template"
                )
        start, end = len(before), len(after)
        if end <= start:
            raise UserError(f"{at}the chat template renders assistant message {i} as no tokens: fix the template")
        stop_at = next((j for j in range(start, end) if full[j] in stops), None)
        if stop_at is not None:
            end = stop_at + 1
        for j in range(start, end):
            trained[j] = True
        spans.append((start, end))
    sample = MaskedSample(full, trained, spans)
    check_mask(tokenizer, messages, sample, stop_ids=stops, where=where)
    return sample


def mask_completion(tokenizer: Any, prompt: str, completion: str, *, max_length: int, where: str = "") -> MaskedSample:
    """Tokenize a plain ``prompt`` and its ``completion`` (no chat template) and train the completion only.

    The two are encoded apart and joined, as a log-likelihood evaluation scores a continuation after its context
    (no special tokens added), so what is trained is exactly what is later scored. A prompt that does not fit
    keeps its *end* (the question and the options sit last; an abstract before them loses its start); a
    completion longer than ``max_length`` is an error.
    """
    at = f"{where}: " if where else ""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if not completion_ids:
        raise UserError(f"{at}the completion is empty, so nothing would be trained")
    if len(completion_ids) >= max_length:
        raise UserError(f"{at}the completion alone is {len(completion_ids)} tokens, max_length is {max_length}")
    keep = max_length - len(completion_ids)
    prompt_ids = prompt_ids[-keep:] if len(prompt_ids) > keep else prompt_ids
    ids = [*prompt_ids, *completion_ids]
    trained = [False] * len(prompt_ids) + [True] * len(completion_ids)
    return MaskedSample(ids, trained, [(len(prompt_ids), len(ids))])


def check_mask(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    sample: MaskedSample,
    *,
    stop_ids: frozenset[int],
    where: str = "",
) -> None:
    """At least one trained token, and each turn's trained tokens decode to that assistant message's content."""
    at = f"{where}: " if where else ""
    if sample.n_trained == 0:
        raise UserError(f"{at}no token is trained: the assistant turns rendered as nothing")
    contents = [m["content"] for m in messages if m.get("role") == "assistant"]
    if len(contents) != len(sample.spans):
        raise UserError(f"{at}found {len(sample.spans)} assistant spans for {len(contents)} assistant messages")
    for n, (content, (start, end)) in enumerate(zip(contents, sample.spans, strict=True)):
        ids = [t for t in sample.input_ids[start:end] if t not in stop_ids]
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if text.strip() != content.strip():
            raise UserError(
                f"{at}assistant message {n + 1}'s trained tokens decode to {text.strip()[:60]!r}, not to its "
                f"content {content.strip()[:60]!r}: the chat template changes assistant content (strips "
                "reasoning, adds text), so the mask would train the wrong tokens: fix the template"
            )


def render_tokens(tokenizer: Any, sample: MaskedSample) -> str:
    """The sample's tokens on one string: ``[tok]`` for trained tokens, ``tok`` for the rest; newlines as ``↵``."""
    pieces = []
    for token_id, keep in zip(sample.input_ids, sample.trained, strict=True):
        text = tokenizer.decode([token_id], skip_special_tokens=False).replace("\n", "↵")
        pieces.append(f"[{text}]" if keep else text)
    return "".join(pieces)
