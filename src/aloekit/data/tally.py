"""Every row a data stage does not keep is counted here, by stage and reason, never dropped silently.

A data build reports these counts in ``stats.json`` and the data card. In strict mode a malformed input row
stops the build with its one-line error instead (cleaning, dedup and decontamination drops are decisions, not
input errors, so they are only counted).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from aloekit.errors import MalformedRow

T = TypeVar("T")

_EXAMPLES = 3


class Tally:
    """Dropped rows by ``(stage, reason)``, with the first few locations of each as examples."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], list[str]] = defaultdict(list)

    def drop(self, stage: str, reason: str, where: str) -> None:
        key = (stage, reason)
        self.counts[key] += 1
        if len(self.examples[key]) < _EXAMPLES:
            self.examples[key].append(where)

    def malformed(self, stage: str, error: MalformedRow) -> None:
        """A row that could not be read: raised again in strict mode, counted otherwise."""
        if self.strict:
            raise error
        self.drop(stage, error.reason, error.message)

    def read(self, stage: str, parse: Callable[..., T], *args: Any) -> T | None:
        """``parse(*args)``, or None (counted) when it raises :class:`MalformedRow`."""
        try:
            return parse(*args)
        except MalformedRow as e:
            self.malformed(stage, e)
            return None

    def total(self, stage: str | None = None) -> int:
        return sum(n for (s, _), n in self.counts.items() if stage is None or s == stage)

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for (stage, reason), n in sorted(self.counts.items()):
            out[stage][reason] = {"count": n, "examples": self.examples[(stage, reason)]}
        return dict(out)

    def why_empty(self, what: str, fix: str) -> str:
        """The one-line reason a stage kept nothing: how many rows it dropped, for the commonest reasons."""
        if not self.counts:
            return f"{what}: the inputs hold no rows; {fix}"
        top = self.counts.most_common(4)
        reasons = ", ".join(f"{n} {reason} ({stage})" for (stage, reason), n in top)
        more = f", {len(self.counts) - len(top)} more reasons" if len(self.counts) > len(top) else ""
        first = self.examples[top[0][0]][:1]
        example = f"; first: {first[0][:160]}" if first else ""
        return f"{what}: {self.total()} rows dropped: {reasons}{more}{example}; {fix}"
