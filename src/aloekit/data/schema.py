"""The shapes every source is converted into, so later stages never see a dataset's own field names.

Three record types flow through the data stage:

* :class:`MCQItem`: a multiple-choice question (benchmarks, and MCQ training sets before chat formatting);
* :class:`ChatSample`: chat turns in the ``messages`` layout TRL's SFTTrainer reads as is;
* :class:`PreferencePair`: a prompt with a chosen and a rejected reply, in TRL's conversational preference layout;

plus :class:`HarmfulRequest`, a red-teaming prompt with whatever safe / harmful replies its source ships.
Each has ``to_json`` / ``from_json`` so every file the data stage writes is plain JSON lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aloekit.errors import MalformedRow, UserError

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

ROLES = ("system", "user", "assistant")
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice question, whatever benchmark or file it came from."""

    id: str
    """Stable identifier from the source (row id, PMID, ...), or ``<file>:<row>`` when the source has none."""
    question: str
    options: tuple[str, ...]
    """Option texts, in the source's order (A, B, C, ... or yes/no/maybe)."""
    answer: int
    """Index of the right option in ``options``."""
    context: str | None = None
    """Text the question is about (the PubMedQA abstract), shown before the question."""
    subject: str | None = None
    explanation: str | None = None
    """Why the answer is right: an expert explanation shipped with the source (MedMCQA ``exp``, PubMedQA long
    answer) or a verified chain-of-thought. Never shown to a model being evaluated."""
    source: str | None = None
    """Name of the source the item was read from (``medmcqa``, ``pubmedqa_train``, a file name...)."""

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise MalformedRow(
                "too few options", f"question {self.id}: needs at least 2 options, has {len(self.options)}"
            )
        if len(self.options) > len(LETTERS):
            raise MalformedRow("too many options", f"question {self.id}: has {len(self.options)} options, at most 10")
        if not 0 <= self.answer < len(self.options):
            raise MalformedRow(
                "answer out of range",
                f"question {self.id}: answer index {self.answer} is outside its {len(self.options)} options",
            )

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "context": self.context,
            "subject": self.subject,
            "explanation": self.explanation,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str) -> MCQItem:
        _require(row, ("id", "question", "options", "answer"), where)
        if not isinstance(row["options"], list) or not all(isinstance(o, str) for o in row["options"]):
            raise MalformedRow("bad options", f"{where}: field 'options' must be a list of strings")
        if not isinstance(row["answer"], int):
            raise MalformedRow("bad answer", f"{where}: field 'answer' must be an option index (int)")
        return cls(
            id=str(row["id"]),
            question=str(row["question"]),
            options=tuple(row["options"]),
            answer=row["answer"],
            context=row.get("context"),
            subject=row.get("subject"),
            explanation=row.get("explanation"),
            source=row.get("source"),
        )


Task = Literal["mcqa", "mcqa_cot", "context_mcqa", "context_mcqa_cot", "open_qa", "dialogue", "safety", "general"]


@dataclass(frozen=True)
class ChatSample:
    """A conversation to train on: the assistant turns are what the model learns to write."""

    id: str
    messages: tuple[Message, ...]
    source: str
    task: str = "open_qa"
    """What kind of sample this is (see :data:`Task`); mixtures report counts per task."""
    plain: bool = False
    """Trained without the chat template: the user turn is a raw prompt and the assistant turn its completion,
    the layout of lm-evaluation-harness prompts (``...\nAnswer:`` then `` B``). A base model is scored that way,
    so a mixture can teach the answer format both in chat and in plain text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        if self.plain and [m["role"] for m in self.messages] != ["user", "assistant"]:
            raise MalformedRow(
                "plain sample not a prompt and a completion",
                f"sample {self.id}: a plain sample has exactly one user turn (the prompt) and one assistant turn",
            )
        check_messages(self.messages, f"sample {self.id}")
        if self.messages[-1]["role"] != "assistant":
            raise MalformedRow("no assistant reply", f"sample {self.id}: the last message must be the assistant's")

    @property
    def prompt_text(self) -> str:
        """The user side (system and user turns), what decontamination and near-dedup compare first."""
        return "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")

    @property
    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)

    def to_json(self) -> dict[str, Any]:
        row = {"id": self.id, "messages": list(self.messages), "source": self.source, "task": self.task}
        return {**row, "plain": True} if self.plain else row

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str) -> ChatSample:
        _require(row, ("messages",), where)
        return cls(
            id=str(row.get("id") or where),
            messages=tuple(row["messages"]),
            source=str(row.get("source") or where),
            task=str(row.get("task") or "open_qa"),
            plain=bool(row.get("plain", False)),
        )


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a dispreferred reply (TRL's conversational preference layout)."""

    id: str
    prompt: tuple[Message, ...]
    """The conversation so far; its last message is the user's."""
    chosen: str
    rejected: str
    source: str
    category: str = "medical"
    """'medical' (verified answer vs the policy's wrong one), 'redteam' (refusal vs compliance), 'benign'
    (helpful answer vs an unneeded refusal), or 'general'."""
    attack_style: str | None = None
    """The jailbreak template wrapped around a red-teaming request (see :mod:`aloekit.safety.styles`)."""
    harm_category: str | None = None
    """The source's harm category (a MedSafetyBench ethics principle, ...), for per-category reporting."""
    plain: bool = False
    """Plain text, no chat template: the prompt is one user turn ending where the reply starts (``...Answer:``) and
    the replies continue it (`` B``), the layout in which log-likelihood benchmarks score a model. Written for TRL
    as strings (its standard layout); a DPO stage takes all plain pairs or none."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", tuple(dict(m) for m in self.prompt))
        check_messages(self.prompt, f"pair {self.id}")
        if self.plain and len(self.prompt) != 1:
            raise MalformedRow(
                "plain pair not one prompt", f"pair {self.id}: a plain pair has exactly one user turn (the prompt)"
            )
        if self.prompt[-1]["role"] != "user":
            raise MalformedRow(
                "prompt not ending in user turn", f"pair {self.id}: the prompt must end with a user turn"
            )
        if not self.chosen.strip() or not self.rejected.strip():
            raise MalformedRow("empty reply", f"pair {self.id}: chosen and rejected must both be non-empty")
        if self.chosen.strip() == self.rejected.strip():
            raise MalformedRow("chosen equals rejected", f"pair {self.id}: chosen and rejected are the same text")

    @property
    def prompt_text(self) -> str:
        return "\n".join(m["content"] for m in self.prompt)

    def to_json(self) -> dict[str, Any]:
        # prompt / chosen / rejected as message lists: DPOTrainer applies the chat template to this layout itself;
        # plain pairs as strings, which it tokenizes as they are.
        if self.plain:
            replies: dict[str, Any] = {
                "prompt": self.prompt[0]["content"],
                "chosen": self.chosen,
                "rejected": self.rejected,
                "plain": True,
            }
        else:
            replies = {
                "prompt": list(self.prompt),
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}],
            }
        return {
            "id": self.id,
            **replies,
            "source": self.source,
            "category": self.category,
            "attack_style": self.attack_style,
            "harm_category": self.harm_category,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str) -> PreferencePair:
        _require(row, ("prompt", "chosen", "rejected"), where)
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        return cls(
            id=str(row.get("id") or where),
            prompt=tuple(prompt),
            chosen=_reply(row["chosen"], where, "chosen"),
            rejected=_reply(row["rejected"], where, "rejected"),
            source=str(row.get("source") or where),
            category=str(row.get("category") or "general"),
            attack_style=row.get("attack_style"),
            harm_category=row.get("harm_category"),
            plain=row.get("plain") is True,
        )


@dataclass(frozen=True)
class HarmfulRequest:
    """A request a medical assistant must not fulfil as asked (red-teaming training material)."""

    id: str
    prompt: str
    source: str
    category: str | None = None
    safe_response: str | None = None
    """A refusal that still helps where it can, when the source ships one (MedSafetyBench)."""
    harmful_response: str | None = None
    """A compliant reply or its opening, when the source ships one (AdvBench ``target``)."""

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise MalformedRow("empty prompt", f"request {self.id}: the prompt is empty")


def check_messages(messages: Sequence[Any], what: str) -> None:
    """Messages must be non-empty ``{role, content}`` dicts with known roles and string contents."""
    if not messages:
        raise MalformedRow("no messages", f"{what}: has no messages")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise MalformedRow("bad message", f"{what}: message {i} must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise MalformedRow("unknown role", f"{what}: message {i} has role {m['role']!r}; use one of {ROLES}")
        if not isinstance(m["content"], str):
            raise MalformedRow("bad message", f"{what}: message {i} content must be a string")


def _require(row: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    for key in keys:
        if row.get(key) is None:
            raise MalformedRow(
                f"missing field '{key}'",
                f"{where}: missing field '{key}' (fields present: {', '.join(sorted(row)) or 'none'})",
            )


def _reply(value: Any, where: str, key: str) -> str:
    """A reply given as a string, or as a message list whose last message is the assistant's."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], Mapping) and value[-1].get("role") == "assistant":
        return str(value[-1].get("content", ""))
    raise MalformedRow(
        f"bad field '{key}'",
        f"{where}: field '{key}' must be a string or a list of messages ending with the assistant's",
    )


__all__ = ["LETTERS", "ChatSample", "HarmfulRequest", "MCQItem", "Message", "PreferencePair", "UserError"]
