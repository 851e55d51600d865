"""A judge's verdict on one reply, and the :class:`Judge` protocol every judge satisfies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Label = Literal["refusal", "compliance"]


@dataclass(frozen=True)
class Verdict:
    """One judgement of one reply."""

    label: Label
    partial: bool
    """Refusal and compliance mixed (refuses, then answers anyway; or answers part and declines the rest). Always
    with ``label == "refusal"``, as XSTest counts partial refusals as refusals."""
    score: float
    """Refusal confidence in [0, 1]; above 0.5 means ``label == "refusal"``."""
    reasons: tuple[str, ...]
    """Names of the signals that fired (``+name``: a content signal; ``name~``: a signal late in the opening)."""

    @property
    def refused(self) -> bool:
        return self.label == "refusal"


@runtime_checkable
class Judge(Protocol):
    """Anything that labels ``(prompt, reply)`` pairs: the offline judge, or an LLM judge behind an engine."""

    name: str

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]: ...
