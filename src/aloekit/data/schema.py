"""The shapes every source is converted into, so later stages never see a dataset's own field names."""

from __future__ import annotations

from dataclasses import dataclass

from aloekit.errors import UserError


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

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise UserError(f"question {self.id}: needs at least 2 options, has {len(self.options)}")
        if not 0 <= self.answer < len(self.options):
            raise UserError(
                f"question {self.id}: answer index {self.answer} is outside its {len(self.options)} options"
            )
