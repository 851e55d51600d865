"""Choice-shuffle ensembles: the pure math of Medprompt's option shuffling and voting.

A model that prefers a position ("A" is a common favourite of small models) answers the same question
differently when its options are reordered; asking several times with the options shuffled and voting cancels
that bias and averages out reasoning noise. The functions here know nothing about models:

* :func:`permutations` draws the orders (run 0 keeps the original order, so a one-run ensemble is plain CoT);
* :func:`shuffle` shows an item with its options in one order, :func:`to_original` maps a chosen position back;
* :func:`vote` takes the plurality of the original-letter answers with a documented tie-break.

Convention: a permutation ``p`` lists, for each displayed position ``i``, the original index ``p[i]`` of the option
shown there. The item shown has ``options[i] = original.options[p[i]]``; a model answering position ``i`` chose the
original option ``p[i]``.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from aloekit.data.schema import MCQItem

__all__ = ["permutations", "question_rng", "shuffle", "to_original", "vote"]

Permutation = tuple[int, ...]


def permutations(n_options: int, runs: int, *, seed: int, key: str = "") -> list[Permutation]:
    """``runs`` option orders for a question with ``n_options`` options.

    Run 0 is the identity: the ensemble's first member is the unshuffled prompt, so the ablation's single-run
    step and the ensemble share those generations (and a one-run ensemble equals no ensemble). Later runs are
    drawn from an RNG seeded by ``seed`` and ``key`` (the question id): the same question gets the same orders
    in every run of the tool, independently of which other questions are evaluated. Orders repeat only when
    there are fewer distinct orders than runs (2 options allow 2).
    """
    if n_options < 1 or runs < 1:
        raise ValueError(f"need at least one option and one run, got {n_options} options and {runs} runs")
    identity = tuple(range(n_options))
    rng = question_rng(seed, key)
    orders: list[Permutation] = [identity]
    distinct = _factorial_at_least(n_options, runs)
    while len(orders) < runs:
        order = list(identity)
        rng.shuffle(order)
        candidate = tuple(order)
        if candidate in orders and distinct:
            continue  # prefer unseen orders while enough exist
        orders.append(candidate)
    return orders


def question_rng(seed: int, key: str) -> random.Random:
    """An RNG for one question: the same (seed, question id) draws the same numbers whatever else is evaluated."""
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big"))


def _factorial_at_least(n: int, k: int) -> bool:
    """Whether n! >= k, without computing n! for large n."""
    total = 1
    for i in range(2, n + 1):
        total *= i
        if total >= k:
            return True
    return total >= k


def shuffle(item: MCQItem, order: Permutation) -> MCQItem:
    """``item`` with its options shown in ``order`` (and its answer index moved with them)."""
    if sorted(order) != list(range(len(item.options))):
        raise ValueError(f"order {order} is not a permutation of {len(item.options)} options")
    return replace(item, options=tuple(item.options[i] for i in order), answer=order.index(item.answer))


def to_original(position: int | None, order: Permutation) -> int | None:
    """The original option index of the displayed ``position`` the model chose (None stays None: unparseable)."""
    return None if position is None else order[position]


def vote(answers: Sequence[int | None]) -> int | None:
    """The plurality of ``answers`` (original option indices, one per run or sample); None if none was readable.

    Unreadable answers (None) abstain. Ties go to the tied answer that was given first: runs are ordered with
    the unshuffled prompt first, so a tie falls back to the plain chain-of-thought answer, and the result is
    deterministic for the same inputs (never a coin flip, never the lowest letter, which would favour "A").
    """
    readable = [a for a in answers if a is not None]
    if not readable:
        return None
    counts = Counter(readable)
    top = max(counts.values())
    return next(a for a in readable if counts[a] == top)
