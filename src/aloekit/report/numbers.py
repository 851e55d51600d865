"""How the report writes a number: one place, so the findings, the tables, the risk assessment and the model card
print the same value the same way (and a test can find a card's number in the summary it came from)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "acc_cell",
    "change_cell",
    "count_cell",
    "duration",
    "estimate",
    "excludes_zero",
    "interval",
    "loss_cell",
    "number",
    "percent",
    "points",
    "rate_cell",
    "rate_text",
    "relative_cell",
    "shares",
]


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


# --- table cells: numbers as the report's tables show them ("n/a" where a value is missing) --------------------


def _fmt(value: float, signed: bool) -> str:
    return f"{value:+.3f}" if signed else f"{100 * value:.1f}"


def estimate(value: Any, ci: Sequence[Any] | None = None, n: Any = None, *, signed: bool = False) -> str:
    """``61.2% [57.1, 65.0], n=500``: a rate as a percentage with its 95% CI (in points) and sample size;
    ``signed`` for scores on [-1, 1] (``+0.120 [-0.030, +0.250]``). Missing values read ``n/a``."""
    v = number(value)
    text = "n/a" if v is None else _fmt(v, signed) + ("" if signed else "%")
    lo, hi = (number(ci[0]), number(ci[1])) if ci is not None and len(ci) == 2 else (None, None)
    if v is not None and lo is not None and hi is not None:
        text += f" [{_fmt(lo, signed)}, {_fmt(hi, signed)}]"
    if n is not None:
        text += f", n={int(n):,}"
    return text


def rate_cell(r: Mapping[str, Any] | None, *, with_n: bool = True) -> str:
    """A redteam/Wilson rate dict (``n``, ``rate``, ``ci95``)."""
    if not r:
        return "n/a"
    return estimate(r.get("rate"), r.get("ci95"), r.get("n") if with_n else None)


def acc_cell(b: Mapping[str, Any] | None, *, with_n: bool = True) -> str:
    """An MCQA result (``n``, ``acc``, ``acc_ci95``)."""
    if not b:
        return "n/a"
    return estimate(b.get("acc"), b.get("acc_ci95"), b.get("n") if with_n else None)


def loss_cell(value: Any) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:.4f}"


def duration(seconds: Any) -> str:
    s = number(seconds)
    if s is None:
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def count_cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value if value is not None else "n/a")


def change_cell(value: Any, ci: Sequence[Any] | None = None, n: Any = None) -> str:
    """An accuracy change in percentage points with its 95% CI: ``+5.0 [+1.0, +9.0], n=120``."""
    v = number(value)
    if v is None:
        return "n/a"
    text = f"{100 * v:+.1f}"
    lo, hi = (number(ci[0]), number(ci[1])) if ci is not None and len(ci) == 2 else (None, None)
    if lo is not None and hi is not None:
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return text + (f", n={int(n):,}" if n is not None else "")


def shares(distribution: Any) -> str:
    """``A 31% · B 25% · C 24% · D 20%`` (unparseable only when some were)."""
    if not isinstance(distribution, Mapping):
        return "n/a"
    parts = []
    for label, share in distribution.items():
        v = number(share)
        if v is not None and (label != "unparseable" or v > 0):
            parts.append(f"{label} {100 * v:.0f}%")
    return " · ".join(parts)


def relative_cell(value: Any) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:.3g}"
