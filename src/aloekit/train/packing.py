"""Best-fit-decreasing packing that keeps the copies of one item in the same row.

Why: the data stage teaches each multiple-choice question at every letter (``<item>:rot0`` .. ``:rot3``) so that no
letter prior can lower the loss. That holds over the whole dataset, but an optimizer step sees a few rows: when the
four copies land in different steps, each step's answers favour some letter and the model's favourite letter swings
from step to step (measured: "A" 89% -> "C" 91% -> "A" 80% of validation answers). Packed into one row, the four
copies' gradients on any letter bias cancel within the step, and only what the question says is left to learn.

Pure functions: lengths and group keys in, bins of sample indices out; the trainer builds the rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def pack_groups(lengths: Sequence[int], groups: Sequence[str], max_length: int) -> list[list[int]]:
    """Bins (lists of sample indices, in order) of at most ``max_length`` tokens, each group whole where it fits.

    A group whose samples together exceed ``max_length`` is packed sample by sample (each sample is at most
    ``max_length`` long: the tokenizer truncated it). Units are placed largest first, each into the fullest bin it
    fits (best fit decreasing, as TRL's ``bfd`` strategy does for single samples).
    """
    if len(lengths) != len(groups):
        raise ValueError("one group key per sample")
    if any(n > max_length for n in lengths):
        raise ValueError(f"a sample is longer than max_length {max_length}: truncate before packing")
    members: dict[str, list[int]] = {}
    for index, key in enumerate(groups):
        members.setdefault(key, []).append(index)
    units: list[list[int]] = []
    for indices in members.values():
        if sum(lengths[i] for i in indices) <= max_length:
            units.append(indices)
        else:
            units.extend([i] for i in indices)
    # Largest first; ties keep first-seen order so the result does not depend on hash order.
    units.sort(key=lambda unit: -sum(lengths[i] for i in unit))
    bins: list[list[int]] = []
    # (free space, bin index), sorted: the first entry with space >= size is the best fit.
    free: list[tuple[int, int]] = []
    for unit in units:
        size = sum(lengths[i] for i in unit)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            space, number = free.pop(at)
        else:
            space, number = max_length, len(bins)
            bins.append([])
        bins[number].extend(unit)
        if space - size > 0:
            bisect.insort(free, (space - size, number))
    return bins


def grouped_order(groups: Sequence[str], seed: int) -> list[int]:
    """Indices with each group's members next to each other (in their own order) and the groups shuffled.

    The DPO stage feeds pairs in this order: a question's rotated pairs (every letter chosen and rejected once)
    then fall in the same optimizer step when the step holds a multiple of the group size, so no step rewards a
    letter. Deterministic in ``seed``, so a resumed run replays the same order.
    """
    import random

    members: dict[str, list[int]] = {}
    for index, key in enumerate(groups):
        members.setdefault(key, []).append(index)
    blocks = list(members.values())
    random.Random(seed).shuffle(blocks)
    return [i for block in blocks for i in block]
