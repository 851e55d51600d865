"""Exact and near-duplicate removal, keeping the first record of each group in input order.

Exact dedup compares keys after :func:`normalise`, so copies that differ only in case, accents, punctuation or
spacing count as the same record. Near dedup compares sets of word n-gram shingles by Jaccard similarity, found
with MinHash LSH (``datasketch``) and then *confirmed on the exact shingle sets*: LSH only proposes candidates, so
neither an LSH collision nor MinHash estimation noise can drop a record whose true Jaccard is below the
threshold. Because confirmation is exact, the LSH bands are tuned for recall (see :func:`_lsh_params`) rather
than datasketch's default balance, which finds only about a third of the pairs sitting right at the threshold.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from datasketch import MinHash, MinHashLSH
from pydantic import Field

from aloekit.config import _Config
from aloekit.data.tally import Tally

__all__ = [
    "DedupConfig",
    "NearDuplicate",
    "exact_dedup",
    "jaccard",
    "near_dedup",
    "near_duplicate_pairs",
    "normalise",
    "shingles",
]

T = TypeVar("T")

STAGE = "dedup"

# Anything but a letter or digit (``\\w`` without the underscore) separates words.
_NON_WORD = re.compile(r"[\W_]+")
# Combining marks, which NFKD splits off accented letters ("é" -> "e" + U+0301).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Share of the pairs sitting exactly at the threshold that LSH must propose as candidates.
_LSH_RECALL = 0.99


class DedupConfig(_Config):
    """Near-duplicate removal (MinHash LSH over word n-gram shingles)."""

    threshold: float = Field(
        0.72,
        gt=0,
        le=1,
        description="Jaccard similarity of word shingles at or above which a later record is dropped as a near "
        "duplicate of an earlier kept one (0.72 is the Aloe recipe's QA threshold).",
    )
    num_perm: int = Field(
        128, ge=16, le=1024, description="MinHash permutations: more find borderline pairs more reliably, slower."
    )
    shingle: int = Field(
        2,
        ge=1,
        le=10,
        description="Words per shingle. 2 (bigrams): medical questions are short (MedMCQA median 11 words), and "
        "with longer shingles one edited word already breaks most of a short text's shingles; 1 would ignore word "
        "order and call 'X causes Y' and 'Y causes X' the same.",
    )
    seed: int = Field(0, description="Seed of the MinHash permutations (only which candidates LSH proposes).")


def normalise(text: str) -> str:
    """Compare-form of ``text``: accents removed, case-folded, punctuation and symbols as spaces, single spaces.

    NFKD splits accented letters into letter + combining mark (dropped) and folds compatibility forms
    (full-width letters, ligatures), so "Anémie", "ANEMIE" and "anemie" compare equal. This form is only
    ever compared, never trained on, so the meaning NFKD can lose (superscripts) does not matter here.
    """
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def shingles(text: str, size: int) -> set[str]:
    """Word ``size``-grams of the normalised text; a text with fewer words is one shingle (itself), so a
    two-word question can still be matched, and only by an identical one. An empty text has none."""
    words = normalise(text).split()
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def exact_dedup(records: Sequence[T], key: Callable[[T], str], tally: Tally, where: Callable[[T], str]) -> list[T]:
    """Records whose normalised key was not seen before, in input order; each later copy is counted as
    ``("dedup", "exact duplicate")`` with the example ``"<where> = <kept where>"``."""
    first: dict[str, T] = {}
    kept: list[T] = []
    for record in records:
        k = normalise(key(record))
        if k in first:
            tally.drop(STAGE, "exact duplicate", f"{where(record)} = {where(first[k])}")
            continue
        first[k] = record
        kept.append(record)
    return kept


@dataclass(frozen=True)
class NearDuplicate:
    """A record dropped as a near duplicate of an earlier kept one (indices into the input)."""

    dropped: int
    kept: int
    jaccard: float
    """Jaccard similarity of the two records' shingle sets, computed exactly (not the MinHash estimate)."""


def near_duplicate_pairs(records: Sequence[T], key: Callable[[T], str], config: DedupConfig) -> list[NearDuplicate]:
    """Which records near dedup drops, and the earlier kept record each one duplicates (the most similar one).

    Records are visited in input order; each is compared with the records kept so far only, so the first of a
    group is the one kept and a record is never dropped for resembling something that was itself dropped.
    Records with no shingle (empty after normalisation) are never near duplicates; exact dedup handles them.
    """
    b, r = _lsh_params(config.threshold, config.num_perm)
    index = MinHashLSH(num_perm=config.num_perm, params=(b, r))
    kept_sets: dict[int, np.ndarray] = {}
    found: list[NearDuplicate] = []
    for i, (hashes, minhash) in enumerate(_sketches(records, key, config)):
        if minhash is None:
            continue
        best: tuple[float, int] | None = None
        for j in index.query(minhash):
            similarity = _sorted_jaccard(hashes, kept_sets[j])
            # Ties go to the earliest kept record, so the report does not depend on LSH's bucket order.
            if similarity >= config.threshold and (best is None or (similarity, -j) > (best[0], -best[1])):
                best = (similarity, j)
        if best is None:
            index.insert(i, minhash, check_duplication=False)
            kept_sets[i] = hashes
        else:
            found.append(NearDuplicate(dropped=i, kept=best[1], jaccard=best[0]))
    return found


def near_dedup(
    records: Sequence[T], key: Callable[[T], str], config: DedupConfig, tally: Tally, where: Callable[[T], str]
) -> list[T]:
    """Records that are not near duplicates of an earlier kept record, in input order; each drop is counted
    as ``("dedup", "near duplicate")`` with the example ``"<where> ~ <kept where> (J=0.81)"``."""
    dropped = set()
    for pair in near_duplicate_pairs(records, key, config):
        dropped.add(pair.dropped)
        tally.drop(
            STAGE,
            "near duplicate",
            f"{where(records[pair.dropped])} ~ {where(records[pair.kept])} (J={pair.jaccard:.2f})",
        )
    return [record for i, record in enumerate(records) if i not in dropped]


# --- internals ------------------------------------------------------------------------------------------------


def _sketches(
    records: Sequence[T], key: Callable[[T], str], config: DedupConfig
) -> Iterator[tuple[np.ndarray, MinHash | None]]:
    """(sorted unique 32-bit shingle hashes, MinHash of them) per record; the MinHash is None without shingles.

    Shingles are hashed once, with CRC-32: deterministic (unlike Python's ``hash``, seeded per process) and six
    times faster than datasketch's default SHA-1, which dominated the run time; datasketch's affine32 scheme
    pre-mixes input hashes, so CRC's linearity does not bias the MinHash. The same integers feed the MinHash
    and the exact confirmation (two of a text's few dozen shingles colliding in 32 bits is a one-in-a-million
    event, and would only nudge one similarity). Sorted uint32 arrays keep a kept record's set at ~4 bytes per
    shingle, so a million records stay in memory.
    """
    # One template MinHash: its permutations are drawn once and shared by every copy (MinHash.generator's trick).
    template = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=_identity)
    for record in records:
        grams = shingles(key(record), config.shingle)
        hashes = np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint32, count=len(grams)))
        if hashes.size == 0:
            yield hashes, None
            continue
        minhash = template.copy()
        minhash.update_batch(hashes)
        yield hashes, minhash


def _identity(value: int) -> int:
    """MinHash's hash function for inputs that are already hashes (datasketch pre-mixes them anyway)."""
    return int(value)


def _sorted_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    common = np.intersect1d(a, b, assume_unique=True).size
    return common / (a.size + b.size - common)


def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) with the most rows per band such that a pair at exactly ``threshold`` becomes a
    candidate with probability >= 99%. More rows per band means fewer false candidates to confirm; the 99%
    keeps LSH misses well below the 5% recall budget (threshold 0.72, 128 permutations: 25 bands of 5 rows)."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= _LSH_RECALL:
            best = (bands, rows)
        else:
            break
    return best
