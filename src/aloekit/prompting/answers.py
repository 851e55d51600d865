"""Read the option a model chose out of its free-text reply, or admit that it cannot be read.

In ``generate`` mode a model writes whatever it likes: a bare letter, a markdown-bold verdict, or paragraphs of
chain-of-thought that discuss every option before concluding. Scoring must credit only what the model actually
committed to, so the rules below prefer an explicit final-answer statement (the last one, since reasoning
mentions options before it concludes), then a reply that *is* a label, then the text of exactly one option, and
otherwise return ``None``. ``None`` is counted as unparseable, never as a guess: a lenient extractor that picks
the first capital letter would reward a model for writing "A patient..." and silently inflate accuracy.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["extract_choice"]

# Words that can follow a bare letter label in "Answer: A because ..." but never the article in "a beta blocker".
# A letter followed by any other word is not read as a label: "Answer: A patient with ..." is prose.
_CONNECTORS = frozenset(
    {"because", "since", "as", "is", "was", "would", "will", "seems", "appears", "which", "due", "for", "here", "in"}
)
# At the very start of a reply there is no cue, so only a causal clause marks a label: "B because ...".
# "Option A is correct in some patients" is a claim about A, not a choice of it.
_START_CONNECTORS = frozenset({"because", "since"})
_WINDOW = 200

# What introduces a final answer. "answer choices/options" introduces the option list instead, so it is excluded.
_CUE = (
    r"(?:\banswer(?!\s+(?:choices|options)\b)(?:\s+(?:choice|option))?(?:\s+to\s+(?:this|the|that)\s+question)?\b"
    r"|\b(?:correct|right|best|most\s+appropriate|most\s+likely)\s+(?:option|choice|response)\b"
    r"|\b(?:my|final)\s+(?:choice|pick)\b"
    r"|\bI(?:\s+would|\s+will|'d|'ll)?\s+(?:choose|pick|select|go\s+with)\b"
    r"|\bI\s+(?:think|believe)\s+(?:it's|its|it\s+is|it\s+would\s+be)\b"
    r"|\\boxed\{)"
)
# Copulas, hedges and punctuation that may sit between the cue and the label: "answer, therefore, is: B".
_LINK = (
    r"(?:\s*+(?:\b(?:is|was|would\s+be|will\s+be|should\s+be|must\s+be|therefore|thus|hence|so|clearly|definitely"
    r"|certainly|probably|likely|most\s+likely|then|indeed|obviously)\b|[:=,\-–—→]))*"
)
# Whitespace is scanned only after an opening bracket, so a run of blank lines is not rescanned from every line.
_OPEN = r"(?:(?P<open>[(\[{\"'])\s*+)?"
_CLOSE = r"(?:\s*+(?P<close>[)\]}\"']))?"
# "Option C is correct", "(C) is the best answer": only when the label is marked as an option or opens a sentence,
# so "Vitamin C is correct" stays prose; the predicate must end the clause ("correct in stating ..." does not).
_REVERSE_PREDICATE = (
    r"\s++(?:is|would\s+be|seems\s+to\s+be|appears\s+to\s+be)\s+(?:(?:the|indeed|definitely|clearly|therefore|thus"
    r"|also)\s+)*(?:(?:correct|right|best|most\s+appropriate|most\s+likely)(?:\s+(?:answer|option|choice|one"
    r"|response))?|answer)\b(?=\s*(?:$|[.!;,:)\]\n]|because\b|since\b|as\b|here\b|-))"
)


class _Reading(enum.Enum):
    """A statement that names two different labels ("the answer is A or B"): a statement, but no answer."""

    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class _Patterns:
    canonical: dict[str, str]
    forward: re.Pattern[str]
    reverse: re.Pattern[str]
    leading: re.Pattern[str]
    other_label: re.Pattern[str]
    listing: re.Pattern[str]
    cue: re.Pattern[str]


@lru_cache(maxsize=64)
def _patterns(labels: tuple[str, ...]) -> _Patterns:
    """Regexes for one label set, compiled once: a benchmark extracts thousands of replies with the same labels."""
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    # Whole labels only: "B12", "B-cell", "A1c" and "B's" name no option.
    label = rf"(?<![A-Za-z0-9])(?P<label>{alternatives})(?![A-Za-z0-9]|[-'][A-Za-z0-9])"
    flags = re.IGNORECASE
    return _Patterns(
        canonical={lab.casefold(): lab for lab in labels},
        forward=re.compile(rf"{_CUE}{_LINK}\s*+(?:\b(?:option|choice|letter)\b\s*+)?{_OPEN}{label}{_CLOSE}", flags),
        reverse=re.compile(
            rf"(?:(?:^|(?<=[.!?;:\n]))[ \t]*+|\b(?:option|choice)\s++){_OPEN}{label}{_CLOSE}{_REVERSE_PREDICATE}",
            flags | re.MULTILINE,
        ),
        leading=re.compile(rf"\A(?:\b(?:option|choice)\b\s*+[:\-]?\s*+)?{_OPEN}{label}{_CLOSE}", flags),
        other_label=re.compile(
            rf"\A\s*+(?:[)\]}}\"']\s*+)?(?:,|/|&|\bor\b|\band\b|\bvs\b\.?)(?:\s*+\b(?:or|and)\b)?\s*+"
            rf"(?:\b(?:option|choice)\b\s*+)?[(\[]?\s*+{label}",
            flags,
        ),
        listing=re.compile(rf"^[ \t]*[(\[]?{label}(?:[)\].:]|[ \t]*$)", flags | re.MULTILINE),
        cue=re.compile(rf"{_CUE}{_LINK}", flags),
    )


def _normalize(text: str) -> str:
    """Drop markdown emphasis and LaTeX text wrappers, which decorate a label without changing it."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"\*+|__|`+", "", text)
    text = re.sub(r"\\text(?:bf|rm|it)?\{([^{}]*)\}", r"\1", text)
    return text.strip()


def _starts_with(text: str, phrase: str) -> bool:
    """Whether ``text`` opens with ``phrase`` as whole words (case-insensitive)."""
    phrase = phrase.strip()
    if not phrase or text[: len(phrase)].casefold() != phrase.casefold():
        return False
    return not text[len(phrase) : len(phrase) + 1].isalnum()


def _is_option_text(text: str, label: str, labels: Sequence[str], options: Sequence[str] | None) -> bool:
    """Whether a label-looking token is really the start of *another* option's text ("B cells" as option C)."""
    if options is None:
        return False
    return any(
        lab != label and len(opt.strip()) > len(label) and _starts_with(text, opt)
        for lab, opt in zip(labels, options, strict=True)
    )


# A reply cut at the token limit right after "Answer: D. par" agrees with D = "paralysis of ..." as far as it goes;
# fewer characters than this could agree with an option by accident ("C. d" and "difficile").
_CUT_PREFIX = 3


def _confirmed(
    rest: str, label: str, labels: Sequence[str], options: Sequence[str] | None, *, cut: bool = False
) -> bool:
    """Whether the words after a label are that label's own option text ("A Aspirin" with A = Aspirin). With
    ``cut`` (``rest`` runs to the end of a reply that may have stopped at its token limit), the start of that
    option text is enough: "Answer: D. paralysis of" names D = "paralysis of the facial muscles ...", while
    "Answer: B. yes" with B = "no" still contradicts itself and is not read."""
    if options is None:
        return False
    words, option = rest.lstrip(" \t.:)-–—"), options[list(labels).index(label)]
    if _starts_with(words, option):
        return True
    said = " ".join(words.split()).casefold()
    return cut and len(said) >= _CUT_PREFIX and " ".join(option.split()).casefold().startswith(said)


def _read(
    text: str,
    match: re.Match[str],
    pats: _Patterns,
    labels: Sequence[str],
    options: Sequence[str] | None,
    *,
    at_start: bool,
) -> str | _Reading | None:
    """Judge one label-shaped token: the canonical label, an ambiguous statement, or ``None`` when it is prose."""
    raw = match.group("label")
    label = pats.canonical[raw.casefold()]
    # Only the next few words matter; a bounded window keeps a reply with thousands of cues linear, not quadratic.
    window = _WINDOW + max((len(option) for option in options or ()), default=0)
    rest = text[match.end() : match.end() + window]
    other = pats.other_label.match(rest)
    if other is not None and pats.canonical[other.group("label").casefold()] != label:
        return _Reading.AMBIGUOUS
    if _is_option_text(text[match.start("label") : match.end() + window], label, labels, options):
        return None
    head = rest.lstrip(" \t")
    if match.group("open") or match.group("close") or not head or head[0] == "\n":
        return label
    letter = len(raw) == 1 and raw.isalpha()
    if head[0] == "." and letter and re.match(r"\.\s*[a-z]", head):
        # "C. difficile", "E. coli": a genus abbreviation, not option C or E.
        cut = match.end() + len(rest) == len(text)
        return label if _confirmed(head, label, labels, options, cut=cut) else None
    if head[0] in ".:;,!-–—(":
        return label
    if head[0] == "?" or len(head) == len(rest):
        return None  # "B?" is a question; "B'" or "B%" is not a label.
    word = re.match(r"[A-Za-z]+", head)
    if word is not None and word.group().casefold() in (_START_CONNECTORS if at_start else _CONNECTORS):
        return label
    if _confirmed(head, label, labels, options):
        return label
    # A word label after an explicit cue reads naturally with more words ("the answer is yes based on ...");
    # a bare letter followed by a word ("A patient ...") or a reply opening with "No evidence ..." does not.
    return label if not letter and not at_start else None


def _final_statement(
    text: str, pats: _Patterns, labels: Sequence[str], options: Sequence[str] | None
) -> list[tuple[int, str | _Reading]]:
    """Every explicit answer statement as (position, reading), in any order."""
    found: list[tuple[int, str | _Reading]] = []
    for match in pats.forward.finditer(text):
        reading = _read(text, match, pats, labels, options, at_start=False)
        if reading is not None:
            found.append((match.start("label"), reading))
    for match in pats.reverse.finditer(text):
        label = pats.canonical[match.group("label").casefold()]
        if not _is_option_text(text[match.start("label") : match.end() + 1000], label, labels, options):
            found.append((match.start("label"), label))
    return found


def _bare_label(text: str, pats: _Patterns, labels: Sequence[str], options: Sequence[str] | None) -> str | None:
    """A reply that opens with a decorated label ("(B)", "B. Aspirin ..."), unless it merely lists the options."""
    match = pats.leading.match(text)
    if match is None:
        return None
    reading = _read(text, match, pats, labels, options, at_start=True)
    if not isinstance(reading, str):
        return None
    for line in pats.listing.finditer(text):
        if pats.canonical[line.group("label").casefold()] != reading:
            return None  # "A) Aspirin\nB) Heparin ...": the question's options echoed, no choice made.
    return reading


def _option_hits(text: str, options: Sequence[str]) -> set[int]:
    """Indices of option texts named in ``text``, ignoring a hit that lies inside a longer option's hit."""
    spans = []
    for index, option in enumerate(options):
        phrase = option.strip()
        if phrase:
            pattern = rf"(?<![A-Za-z0-9]){re.escape(phrase)}(?![A-Za-z0-9])"
            spans += [(index, m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]
    return {
        i
        for i, start, end in spans
        if not any(j != i and s <= start and end <= e and (e - s) > (end - start) for j, s, e in spans)
    }


def _by_option_text(text: str, pats: _Patterns, labels: Sequence[str], options: Sequence[str]) -> str | None:
    """The one option whose text the final statement names, or that the whole reply is (or opens with)."""
    cues = list(pats.cue.finditer(text))
    if cues:
        statement = re.split(r"(?<=[.!?;])\s|\n", text[cues[-1].end() :].strip(), maxsplit=1)[0]
        hits = _option_hits(statement, options)
        if len(hits) == 1:
            return labels[hits.pop()]
    whole = text.strip(" \t\n.!\"'").casefold()
    exact = {i for i, option in enumerate(options) if option.strip() and option.strip().casefold() == whole}
    if len(exact) == 1:
        return labels[exact.pop()]
    # "Yes, because ...": a reply opening with one option's text and a clause break, not "yes or no".
    opening = {
        i
        for i, option in enumerate(options)
        if _starts_with(text, option) and re.match(r"\s*(?:[.,;:!\-–—]|\n|$)", text[len(option.strip()) :])
    }
    if len(opening) == 1:
        index = opening.pop()
        after = text[len(options[index].strip()) :].lstrip(" \t.,;:!-–—")
        if not any(_starts_with(re.sub(r"^(?:or|and)\s+", "", after), o) for o in options):
            return labels[index]
    return None


def extract_choice(text: str, labels: Sequence[str], options: Sequence[str] | None = None) -> str | None:
    """The label the model chose in ``text``, spelled as in ``labels``, or ``None`` when it cannot be determined.

    ``labels`` are letters (``("A", "B", "C", "D")``) or words (``("yes", "no", "maybe")``), matched
    case-insensitively as whole words. ``options`` are the option texts in label order; when given, a reply that
    names an option by its text ("The answer is heparin.") is credited too. Rules, first that applies:

    1. the last explicit answer statement ("Answer: B", "the correct answer is (C)", "Option C is correct"); a
       last statement naming two labels ("A or B") makes the reply unparseable;
    2. a reply that opens with a decorated label ("B", "(B)", "**B**", "B) Aspirin", "B. Aspirin is ...");
    3. with ``options``: the one option text named in the last answer statement, or that the reply is, or
       that it opens with before a clause break ("Yes, because ..." when the options are yes/no/maybe);
    4. otherwise ``None``.
    """
    if not labels or any(not isinstance(label, str) or not label.strip() for label in labels):
        raise ValueError(f"labels must be non-empty strings, got {list(labels)!r}")
    if len({label.casefold() for label in labels}) != len(labels):
        raise ValueError(f"labels must differ ignoring case, got {list(labels)!r}")
    if options is not None and len(options) != len(labels):
        raise ValueError(f"got {len(options)} options for {len(labels)} labels; they must pair up in order")
    labels = tuple(labels)
    pats = _patterns(labels)
    body = _normalize(text)
    if not body:
        return None
    statements = _final_statement(body, pats, labels, options)
    if statements:
        _, reading = max(statements, key=lambda found: found[0])
        return reading if isinstance(reading, str) else None
    bare = _bare_label(body, pats, labels, options)
    if bare is not None:
        return bare
    if options is not None:
        return _by_option_text(body, pats, labels, options)
    return None
