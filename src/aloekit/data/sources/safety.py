"""Safety data: harmful requests (to learn to refuse) and benign look-alikes (to learn not to over-refuse).

Harmful requests become :class:`~aloekit.data.schema.HarmfulRequest`; prompts that sound dangerous but are fine
("how do I kill a Python process?") become :class:`BenignItem`. Parsers raise
:class:`~aloekit.errors.MalformedRow` for their row alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aloekit.data.schema import HarmfulRequest
from aloekit.data.sources.mcqa import Row
from aloekit.errors import MalformedRow

PROMPT_COLUMNS = ("prompt", "goal", "harmful_medical_request")
"""Where the request is, in order: our own files, AdvBench, MedSafetyBench."""
SAFE_COLUMNS = ("safe_response",)
HARMFUL_COLUMNS = ("harmful_response", "target")
"""A compliant reply or its opening (AdvBench's ``target``: "Sure, here is ...")."""


@dataclass(frozen=True)
class BenignItem:
    """A prompt that sounds dangerous but is fine to answer, with a helpful answer when the source has one."""

    id: str
    prompt: str
    answer: str | None
    source: str

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise MalformedRow("empty prompt", f"benign item {self.id}: the prompt is empty")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "answer": self.answer, "source": self.source}


def harmful(row: Row, source: str) -> HarmfulRequest:
    """A CSV or JSON lines row with the request in ``prompt`` (or ``goal`` / ``harmful_medical_request``) and
    optional ``safe_response``, ``harmful_response`` (or ``target``), ``category`` and ``id`` columns."""
    fields = row.fields()
    return HarmfulRequest(
        id=str(fields.get("id") or row.id),
        prompt=_first(fields, PROMPT_COLUMNS, row, required=True) or "",
        source=source,
        category=_first(fields, ("category",), row),
        safe_response=_first(fields, SAFE_COLUMNS, row),
        harmful_response=_first(fields, HARMFUL_COLUMNS, row),
    )


_CATEGORY = re.compile(r"category_(\d+)")


def medsafetybench(row: Row, source: str) -> HarmfulRequest:
    """MedSafetyBench CSVs (index, ``harmful_medical_request``, ``safe_response``); the category (one of the nine
    AMA principles of medical ethics) is only in the file name, ``med_safety_demonstrations_category_<N>.csv``."""
    found = _CATEGORY.search(row.file.name) if row.file else None
    request = harmful(row, source)
    return HarmfulRequest(
        id=request.id,
        prompt=request.prompt,
        source=source,
        category=found.group(1) if found else request.category,
        safe_response=request.safe_response,
        harmful_response=request.harmful_response,
    )


def benign(row: Row, source: str) -> BenignItem:
    """``prompt`` and an optional ``answer``."""
    fields = row.fields()
    return BenignItem(
        id=str(fields.get("id") or row.id),
        prompt=_first(fields, ("prompt",), row, required=True) or "",
        answer=_first(fields, ("answer",), row),
        source=source,
    )


def _first(fields: Mapping[str, Any], keys: Sequence[str], row: Row, *, required: bool = False) -> str | None:
    """The first of ``keys`` with a non-blank string value (CSV cells left empty count as absent)."""
    for key in keys:
        value = fields.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedRow(f"field '{key}' not str", f"{row.where}: field '{key}' must be a string")
        if value.strip():
            return value.strip()
    if required:
        present = ", ".join(sorted(k for k in fields if k)) or "none"
        raise MalformedRow("empty prompt", f"{row.where}: no request in {' / '.join(keys)} (fields present: {present})")
    return None
