"""The report as typed data: what the gathering (:mod:`aloekit.report.sections`) produces and the templates render.

A report is a title, a line of metadata and a list of :class:`Section`, each made of a few block kinds
(paragraphs, notes, tables, charts, collapsed text...). Every number in a block is already written as text (by
:mod:`aloekit.report.numbers`), so the HTML page, its markdown twin and the model card print the same value the
same way, and no template computes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aloekit.safety.risk import Risk

__all__ = [
    "NOT_CLINICAL",
    "NOT_RUN",
    "Block",
    "Bullets",
    "CardPart",
    "Chart",
    "Code",
    "Facts",
    "Findings",
    "Heading",
    "Markdown",
    "Note",
    "Paragraph",
    "Report",
    "RiskAssessment",
    "Section",
    "Table",
    "not_run",
]

NOT_RUN = "not run in this recipe"
NOT_CLINICAL = (
    "This is research output. The model evaluated here is not a medical device and must not be used "
    "for diagnosis, treatment or triage decisions. Every number below is an estimate on a finite sample; read it "
    "with its 95% confidence interval."
)


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A part that was not run, or a caveat: shown set apart from results."""

    text: str


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    text_columns: int = 1
    """Leading columns holding words (left-aligned); the rest hold numbers (right-aligned)."""


@dataclass(frozen=True)
class Chart:
    """A figure drawn only when the HTML is rendered (the markdown report points to it instead)."""

    caption: str
    draw: Callable[[], bytes]


@dataclass(frozen=True)
class Facts:
    """Labelled key numbers (the headline)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RiskAssessment:
    """The risk assessment. ``risks`` when the summary has a safety evaluation (the HTML is rendered from them);
    ``text`` is the same assessment as markdown (the markdown report and the card quote it), its top heading
    dropped: ``###`` sits below the section's heading as it is. Without ``risks`` (a run whose safety results
    are gone but whose risk.md is not), the HTML shows ``text`` verbatim."""

    text: str
    risks: tuple[Risk, ...] | None = None


@dataclass(frozen=True)
class Code:
    """Verbatim text (the model card, the recipe), collapsed in the HTML."""

    label: str
    text: str


@dataclass(frozen=True)
class Findings:
    """The "What this run shows" box: titled lists of sentences, each list with its kind (``warning``,
    ``supported``, ``unsupported``) for the styling."""

    groups: tuple[tuple[str, str, tuple[str, ...]], ...]


Block = Paragraph | Note | Heading | Table | Chart | Facts | RiskAssessment | Code | Findings


@dataclass(frozen=True)
class Markdown:
    """Markdown aloekit wrote itself (the model card's fixed sentences, a numbered list of stages): shown as it
    is, never escaped, so never untrusted text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A list of sentences (each escaped)."""

    items: tuple[str, ...]


CardPart = Block | Markdown | Bullets
"""What a model card's section is made of: the report's blocks and two markdown-only kinds."""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Report:
    """The whole report: ``meta`` is the line under the title (creation time, final model), possibly empty."""

    title: str
    meta: tuple[str, ...]
    sections: tuple[Section, ...]


def not_run(what: str) -> Note:
    return Note(f"{what}: {NOT_RUN}.")
