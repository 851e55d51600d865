"""Weights, caps and the train/validation split of a mixture's formatted samples, and the general share."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from aloekit.data.mixture.config import MixtureConfig
from aloekit.data.schema import ChatSample
from aloekit.safety.styles import STYLES


def mix_and_split(
    samples: Sequence[ChatSample], config: MixtureConfig, general: set[str], funnel: dict[str, Counter[str]]
) -> tuple[dict[str, list[ChatSample]], dict[str, Any]]:
    """Apply caps and weights per source, split train/validation per source, then the general share.

    The split is drawn from distinct items *before* weights repeat any, so a repeated item never sits on both
    sides of the split (validation loss would then measure memorisation).
    """
    rng = random.Random(config.seed)
    by_source: dict[str, list[ChatSample]] = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s)
    train: dict[str, list[ChatSample]] = {}
    validation: list[ChatSample] = []
    for entry in config.sources:
        pool = by_source.get(entry.label, [])
        funnel[entry.label]["available"] = len(pool)
        distinct = min(len(pool), entry.cap or len(pool))
        target = round(distinct * entry.weight)
        # Copies of one item (its rotations, its attack styles) are drawn and split together: a cap then keeps
        # whole questions (every letter once), and no question sits on both sides of the split.
        groups = _item_groups(pool)
        per_group = len(pool) / len(groups) if groups else 1.0
        picked = rng.sample(groups, min(len(groups), round(min(distinct, target) / per_group)))
        n_val = round(len(picked) * config.validation)
        val = [s for group in picked[:n_val] for s in group]
        tr = [s for group in picked[n_val:] for s in group]
        chosen = val + tr
        repeats = target - len(chosen)
        if repeats > 0 and tr:
            tr = tr + [_repeat(s, i) for i, s in enumerate(rng.choices(tr, k=repeats))]
        train[entry.label], funnel[entry.label]["validation"] = tr, len(val)
        validation.extend(val)
    share = _general_share(train, general, config.general_share, rng)
    for label, rows in train.items():
        funnel[label]["train"] = len(rows)
    train_rows = [s for rows in train.values() for s in rows]
    rng.shuffle(train_rows)
    rng.shuffle(validation)
    return {"train": train_rows, "validation": validation}, share


_COPY_SUFFIX = re.compile(r":(?:rot\d+|" + "|".join(map(re.escape, STYLES)) + r")$")


def item_key(sample_id: str) -> str:
    """The item a sample was made from: its id without a copy suffix (``:rot<k>`` or ``:<attack style>``)."""
    return _COPY_SUFFIX.sub("", sample_id)


def _item_groups(samples: Sequence[ChatSample]) -> list[list[ChatSample]]:
    """``samples`` grouped by the item they were made from (ids ``<item>:rot<k>`` or ``<item>:<style>``), in
    first-seen order; a sample of its own is a group of one."""
    groups: dict[str, list[ChatSample]] = {}
    for s in samples:
        groups.setdefault(item_key(s.id), []).append(s)
    return list(groups.values())


def _repeat(sample: ChatSample, i: int) -> ChatSample:
    return dataclasses.replace(sample, id=f"{sample.id}#repeat{i}")


def _general_share(
    train: dict[str, list[ChatSample]], general: set[str], wanted: float | None, rng: random.Random
) -> dict[str, Any]:
    """Downsample general sources (never medical ones) to reach ``wanted``; report what was reached, honestly."""
    n_general = sum(len(rows) for label, rows in train.items() if label in general)
    n_total = sum(len(rows) for rows in train.values())
    if wanted is None or n_total == 0:
        return {"asked": wanted, "reached": round(n_general / n_total, 4) if n_total else 0.0}
    n_medical = n_total - n_general
    target = round(wanted * n_medical / (1 - wanted))
    if target < n_general:
        for label in [lab for lab in train if lab in general]:
            keep = round(len(train[label]) * target / n_general)
            train[label] = rng.sample(train[label], keep)
    n_general = sum(len(rows) for label, rows in train.items() if label in general)
    n_total = sum(len(rows) for rows in train.values())
    reached = round(n_general / n_total, 4) if n_total else 0.0
    note = None if abs(reached - wanted) < 0.01 else "not enough general data to reach the share asked for"
    return {"asked": wanted, "reached": reached, "note": note}
