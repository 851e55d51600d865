"""How the report writes a number: one place, so the findings, the tables, the risk assessment and the model card
print the same value the same way (and a test can find a card's number in the summary it came from)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["excludes_zero", "number", "percent", "points", "rate_text"]


def number(value: Any) -> float | None:
    """A finite float, or None for missing, null (JSON's NaN), NaN and booleans."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) or math.isinf(out) else out


def interval(ci: Any) -> tuple[float, float] | None:
    """A ``[low, high]`` pair of finite numbers, or None."""
    if not isinstance(ci, Sequence) or isinstance(ci, str) or len(ci) != 2:
        return None
    lo, hi = number(ci[0]), number(ci[1])
    return None if lo is None or hi is None else (lo, hi)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def rate_text(value: Any, ci: Any = None, n: Any = None) -> str:
    """``33.3% [22.1, 46.0], n=48``; "not measured" when there is no value (never "n/a" or "None")."""
    v = number(value)
    if v is None:
        return "not measured"
    text = percent(v)
    bounds = interval(ci)
    if bounds:
        text += f" [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"
    return text + (f", n={int(n):,}" if number(n) is not None else "")


def points(value: Any, ci: Any = None, n: Any = None) -> str:
    """A change in percentage points with its 95% CI: ``+5.0 points [+1.0, +9.0], n=120``."""
    v = number(value)
    if v is None:
        return "not measured"
    text = f"{100 * v:+.1f} points"
    bounds = interval(ci)
    if bounds:
        text += f" [{100 * bounds[0]:+.1f}, {100 * bounds[1]:+.1f}]"
    return text + (f", n={int(n):,}" if number(n) is not None else "")


def excludes_zero(ci: Any) -> bool:
    """True when a 95% CI of a change lies wholly on one side of 0: the only case the report calls a change
    measurable. A CI touching 0 (``[0, 0]`` for identical answers) is no evidence of a change."""
    bounds = interval(ci)
    return bounds is not None and (bounds[0] > 0 or bounds[1] < 0)
