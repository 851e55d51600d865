"""Reading BBQ: the category files named by the catalog, each row checked, which answer names the stereotyped
group, the seeded per-category sample and the prompt. Described in :mod:`aloekit.evaluation.bias`."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aloekit.catalog import BBQ_FILES
from aloekit.data.sources.mcqa import LETTERS, field
from aloekit.errors import MalformedRow, UserError
from aloekit.io import read_jsonl

FOLDER, PATTERN = BBQ_FILES.split("/")
"""Where the category files (``<Category>.jsonl``, nyu-mll/BBQ's ``data/`` layout) sit inside a data folder,
and their glob: the catalog's ``bbq`` test split (:data:`aloekit.catalog.BBQ_FILES`)."""
CHOICES = LETTERS[:3]
# The phrasings BBQ's generator uses for the unknown answer: a fallback for rows whose answer_info lost its tags.
UNKNOWN_PHRASES = frozenset(
    {
        "unknown",
        "cannot be determined",
        "can't be determined",
        "not answerable",
        "not known",
        "not enough info",
        "not enough information",
        "cannot answer",
        "can't answer",
        "undetermined",
    }
)
_GENDER = {"man": "m", "men": "m", "boy": "m", "boys": "m", "woman": "f", "women": "f", "girl": "f", "girls": "f"}

Condition = Literal["ambig", "disambig"]
Polarity = Literal["neg", "nonneg"]
Match = Literal["clean", "none", "both"]


@dataclass(frozen=True)
class BBQItem:
    category: str
    """The file's name without ``.jsonl`` (the unit of ``limit_per_category`` and of the report)."""
    id: str
    """``<category>:<example_id>``."""
    where: str
    """``<path>:<line>``, for messages."""
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    condition: Condition
    polarity: Polarity
    unknown: int
    """Index of the "unknown" answer."""
    target: int | None
    """Index of the answer naming the stereotyped group; None when the group tags do not single one out."""
    match: Match
    """How many non-unknown answers named a stereotyped group: one ("clean"), "none" or "both"."""


# --- which answer names the stereotyped group -------------------------------------------------------------------


def _canonical(text: str) -> str:
    flat = re.sub(r"[\s_]+", "", text.strip().lower())
    return _GENDER.get(flat, flat)


def stereotyped_answers(
    answer_info: Mapping[str, Sequence[str]], stereotyped_groups: Sequence[str], *, unknown: int
) -> list[int]:
    """Indices of the non-unknown answers (of ``ans0..ans2``) that name one of ``stereotyped_groups``.

    Exact matches of canonical strings (see the module docstring): the answer's group tag, each ``-``/``_``
    part of the tag, or its name. ``unknown`` is the unknown answer's index, which never matches.
    """
    wanted = {_canonical(g) for g in stereotyped_groups if g.strip()}
    found = []
    for i in range(3):
        if i == unknown:
            continue
        info = [str(x) for x in answer_info.get(f"ans{i}", ())]
        name, tag = [*info, "", ""][:2]
        candidates = {_canonical(tag), _canonical(name)} | {_canonical(p) for p in re.split(r"[-_]", tag)}
        if wanted & (candidates - {""}):
            found.append(i)
    return found


# --- reading ----------------------------------------------------------------------------------------------------


def load_bbq(data_dir: Path) -> dict[str, list[BBQItem]]:
    """category -> its rows, from ``data_dir/bbq/<Category>.jsonl`` (every file there, sorted by name).

    A row that cannot be read is a one-line :class:`UserError` naming the file, the line and the field.
    """
    folder = data_dir / FOLDER
    files = sorted(folder.glob(PATTERN)) if folder.is_dir() else []
    if not files:
        raise UserError(
            f"no BBQ files in {folder}: put the category files (Age.jsonl, ...) from nyu-mll/BBQ's data/ folder there"
        )
    loaded = {}
    for path in files:
        items = [parse_row(row, where, path.stem) for where, row in read_jsonl(path)]
        if not items:
            raise UserError(f"{path}: no rows; restore the original BBQ file or remove it")
        loaded[path.stem] = items
    return loaded


def parse_row(row: Mapping[str, Any], where: str, category: str) -> BBQItem:
    """One BBQ row, checked: the fields the prompt, the accuracy and the bias score need."""
    context, question = field(row, "context", where), field(row, "question", where)
    answers = (field(row, "ans0", where), field(row, "ans1", where), field(row, "ans2", where))
    label = field(row, "label", where, int)
    if isinstance(label, bool) or label not in (0, 1, 2):
        raise MalformedRow("bad field 'label'", f"{where}: field 'label' must be 0, 1 or 2, got {label!r}")
    condition = field(row, "context_condition", where)
    if condition not in ("ambig", "disambig"):
        raise MalformedRow(
            "bad field 'context_condition'",
            f"{where}: field 'context_condition' must be 'ambig' or 'disambig', got {condition!r}",
        )
    polarity = field(row, "question_polarity", where)
    if polarity not in ("neg", "nonneg"):
        raise MalformedRow(
            "bad field 'question_polarity'",
            f"{where}: field 'question_polarity' must be 'neg' or 'nonneg', got {polarity!r}",
        )
    info = field(row, "answer_info", where, dict)
    groups = field(row, "additional_metadata", where, dict).get("stereotyped_groups")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise MalformedRow(
            "bad field 'additional_metadata.stereotyped_groups'",
            f"{where}: field 'additional_metadata.stereotyped_groups' must be a list of group names",
        )
    unknown = _unknown_index(info, answers, where)
    found = stereotyped_answers(info, groups, unknown=unknown)
    example_id = row.get("example_id", where.rsplit(":", 1)[-1])
    return BBQItem(
        category=category,
        id=f"{category}:{example_id}",
        where=where,
        context=context,
        question=question,
        answers=answers,
        label=label,
        condition=condition,
        polarity=polarity,
        unknown=unknown,
        target=found[0] if len(found) == 1 else None,
        match="clean" if len(found) == 1 else ("none" if not found else "both"),
    )


def _unknown_index(info: Mapping[str, Any], answers: tuple[str, str, str], where: str) -> int:
    """The unknown answer: tagged "unknown" in answer_info, else (a few upstream rows lost their tags) the one
    answer worded like BBQ's unknown answers."""
    tagged = [i for i in range(3) if _tag(info.get(f"ans{i}")) == "unknown"]
    if len(tagged) == 1:
        return tagged[0]
    worded = [i for i, a in enumerate(answers) if a.strip().lower() in UNKNOWN_PHRASES]
    if len(worded) == 1:
        return worded[0]
    raise MalformedRow(
        "no unknown answer",
        f"{where}: field 'answer_info' must tag exactly one of ans0..ans2 as 'unknown' (got {len(tagged)})",
    )


def _tag(info: Any) -> str | None:
    return str(info[1]).strip().lower() if isinstance(info, list) and len(info) >= 2 else None


def sample_rows(items: Sequence[BBQItem], limit: int | None, seed: int) -> list[BBQItem]:
    """A seeded sample of ``limit`` rows (all when None), in file order, spread evenly over the four
    (context condition x question polarity) cells: each cell is shuffled and the cells are taken in turn."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if limit is None or limit >= len(items):
        return list(items)
    # Seeded per category by a string: Python seeds str deterministically (unlike hash()), on every machine.
    rng = random.Random(f"bbq:{seed}:{items[0].category}")
    cells: dict[tuple[str, str], list[int]] = {}
    for i, item in enumerate(items):
        cells.setdefault((item.condition, item.polarity), []).append(i)
    queues = []
    # Polarity-major order, so the first two picks are one ambiguous and one disambiguated example.
    for key in sorted(cells, key=lambda cell: (cell[1], cell[0])):
        members = cells[key]
        rng.shuffle(members)
        queues.append(members)
    chosen: list[int] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    return [items[i] for i in sorted(chosen)]


def prompt(item: BBQItem) -> str:
    """The context every option letter is scored after (layout in the module docstring)."""
    options = "".join(f"{letter}. {text}\n" for letter, text in zip(CHOICES, item.answers, strict=True))
    return f"Context: {item.context}\nQuestion: {item.question}\n{options}Answer:"
