"""The one protocol every engine speaks: generate text, score continuations, and (optionally) score prompts.

Stages never talk to transformers, vLLM or an HTTP server directly; they build requests, hand them to an
engine, and read results back in the same order. That keeps the science (what is asked, how it is scored)
independent of where the model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from aloekit.errors import UserError

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete.

    Exactly one of ``prompt`` (raw text, sent to the model as is) and ``messages`` (chat turns, rendered with
    the model's chat template plus the generation prompt) is set.
    """

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy decoding; above 0, sampling."""
    top_p: float = 1.0
    n: int = 1
    """How many samples to return for this prompt."""
    stop: tuple[str, ...] = ()
    """Generation ends at the first of these strings; the string itself is not returned."""
    seed: int | None = None
    """Seed for sampling; None uses the engine's seed. Greedy decoding ignores it."""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise UserError("a generation request needs exactly one of 'prompt' and 'messages'")
        if self.messages is not None:
            # Accept lists from callers but store a tuple so the request stays hashable (cache keys).
            object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
            for i, m in enumerate(self.messages):
                if set(m) - {"role", "content"} or "role" not in m or "content" not in m:
                    raise UserError(f"message {i} must have exactly the fields 'role' and 'content', got {sorted(m)}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 0:
            raise UserError(f"max_tokens must be >= 0, got {self.max_tokens}")
        if self.n < 1:
            raise UserError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def __hash__(self) -> int:  # dict messages are not hashable; hash their items instead
        msgs = None if self.messages is None else tuple(tuple(sorted(m.items())) for m in self.messages)
        return hash((self.prompt, msgs, self.max_tokens, self.temperature, self.top_p, self.n, self.stop, self.seed))


FinishReason = Literal["stop", "length"]


@dataclass
class Generation:
    """The result of one :class:`GenerationRequest`: ``n`` texts, in sample order."""

    texts: list[str]
    finish_reasons: list[FinishReason]
    prompt_tokens: int
    completion_tokens: list[int]

    @property
    def text(self) -> str:
        """The first (for greedy decoding, the only) sample."""
        return self.texts[0]


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context``: log P(continuation | context) under the model."""

    context: str
    continuation: str

    def __post_init__(self) -> None:
        if not self.continuation:
            raise UserError("a log-likelihood request needs a non-empty continuation")


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float
    """Sum of the continuation tokens' log-probabilities (natural log)."""
    is_greedy: bool
    """True when every continuation token is the model's argmax at its position."""
    n_tokens: int
    """How many tokens the continuation took."""


@dataclass
class PromptLogprobs:
    """Per-token log-probabilities of a prompt, in the OpenAI ``logprobs`` layout (used by ``echo``)."""

    tokens: list[str]
    text_offset: list[int]
    token_logprobs: list[float | None]
    """The first token has no context, hence None, as in the OpenAI API."""
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)


@runtime_checkable
class Engine(Protocol):
    """What every backend implements. Results come back in request order, whatever order the engine ran them."""

    name: str
    """The backend's name: 'hf', 'vllm', 'llamacpp' or 'openai'."""
    model_id: str
    """What the model is called in outputs and by ``aloe serve``."""

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]: ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False
    ) -> list[Loglikelihood]: ...

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]: ...

    def close(self) -> None: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string. Returns the text and whether a stop string was found."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)
