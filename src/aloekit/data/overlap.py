"""Overlap between training texts and evaluation texts: the index decontamination scans with.

Matching works on normalised words (NFKD, combining marks dropped, casefolded, split on anything that is not a
letter or digit, a layout label such as "Question:" or "B)" at the start of a line left out), like the 13-gram
overlap of the GPT-3 paper and lm-evaluation-harness:

* an evaluation text of at least ``n`` words matches a training text that shares any ``n``-word window with it;
* a shorter one (an XSTest prompt has about 8 words) matches a training text that contains its whole word
  sequence, when it has at least :data:`MIN_WORDS` words and is not a stock phrase (a sequence found inside
  :data:`COMMON_ITEMS` or more different evaluation items, like "which of the following is true");
* shorter or stock sequences ("What is LSD?", "Who are you?") match only a whole line, or the whole text, of a
  training record: contained anywhere they would remove ordinary questions that merely start the same way.

Words are hashed once (Python's string hash), windows get a polynomial rolling hash over numpy arrays, and every
hash hit is checked word for word, so a collision can never remove a record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

MIN_WORDS = 6
"""Shortest evaluation text that matches anywhere inside a training text; shorter ones must be a whole line.
On the shared data, 5-word question stems ("sickle cell anemia is a") already match ordinary medical text."""
COMMON_ITEMS = 3
"""A short sequence contained in this many different evaluation items is a stock phrase, not one item's text."""


@dataclass(frozen=True)
class EvalText:
    """One text of an evaluation item; an item may give several (question, question with options, context)."""

    benchmark: str
    id: str
    text: str


def normalise(text: str) -> list[str]:
    """Words for matching: compatibility-decomposed, accents dropped, casefolded, split on non-alphanumerics,
    without the layout labels that start a line ("Question:", "A.", "(B)")."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).translate(_combining_marks())
    return _WORDS(_LABEL("", text).casefold())


_WORDS = re.compile(r"[^\W_]+").findall  # runs of letters and digits, in any script
# A copied MCQ is usually re-laid out ("Question: ...", "A. option"): the labels would otherwise sit between the
# question and option words and break every window across them, and keep a copied prompt from equalling its line.
_LABEL = re.compile(r"^[ \t]*(?:\(?[A-Za-z][.):]|[A-Za-z]+:)[ \t]+", re.MULTILINE).sub


@cache
def _combining_marks() -> dict[int, None]:
    # Built on first non-ASCII text only (a scan of the BMP, a few milliseconds); marks outside it are vanishingly rare.
    return {cp: None for cp in range(0x300, 0x10000) if unicodedata.combining(chr(cp))}


@dataclass(frozen=True)
class Match:
    benchmark: str
    eval_id: str
    ngram: str
    """The matched words (normalised), as found in the training text."""


_P = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling hash (arithmetic wraps modulo 2**64)
_BITS = 24  # a 2**24-entry bit table in front of the sorted key arrays skips most lookups of non-matching windows
_CHUNK_WORDS = 1 << 20  # training words hashed at once: bounds memory whatever the number of records


@dataclass
class _Batch:
    """Texts as one array of word hashes, with where each text and each line starts."""

    words: list[str]
    hashes: np.ndarray
    owner: np.ndarray
    """Text index of every word position."""
    end: np.ndarray
    """End position (exclusive) of the text each word position belongs to."""
    text_start: np.ndarray
    segments: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(start, length, text index) of every line and of every whole text: where whole-line matches may sit."""


def _batch(texts: Sequence[str], segments: bool = True) -> _Batch:
    words: list[str] = []
    starts, seg_start, seg_len, seg_text = [], [], [], []
    for t, text in enumerate(texts):
        starts.append(len(words))
        for line in text.splitlines() if segments else (text,):
            line_words = normalise(line)
            if segments and line_words:
                seg_start.append(len(words))
                seg_len.append(len(line_words))
                seg_text.append(t)
            words += line_words
        if segments and len(words) > starts[-1]:
            seg_start.append(starts[-1])
            seg_len.append(len(words) - starts[-1])
            seg_text.append(t)
    hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    text_start = np.array(starts, dtype=np.int64)
    lengths = np.diff(np.append(text_start, len(words)))
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    seg = (np.array(seg_start, dtype=np.int64), np.array(seg_len, dtype=np.int64), np.array(seg_text, dtype=np.int64))
    return _Batch(words, hashes, owner, (text_start + lengths)[owner], text_start, seg)


def _rolling(hashes: np.ndarray, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(k, hash of the k-word window starting at each position) for k = 1..n, each from the one before."""
    h = hashes
    for k in range(1, n + 1):
        if k > 1:
            h = h[:-1] * _P + hashes[k - 1 :]
        yield k, h


@dataclass(frozen=True)
class _Keys:
    """Sorted window hashes of one length, each with the evaluation text and word position it came from."""

    hashes: np.ndarray
    text: np.ndarray
    pos: np.ndarray

    @classmethod
    def of(cls, hashes: np.ndarray, text: np.ndarray, pos: np.ndarray) -> _Keys:
        # np.unique keeps each hash's first occurrence: a window shared by several items names the first one.
        unique, first = np.unique(hashes, return_index=True)
        return cls(unique, text[first], pos[first])

    def subset(self, keep: np.ndarray) -> _Keys:
        return _Keys(self.hashes[keep], self.text[keep], self.pos[keep])

    def find(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into ``h`` found here, their key indices)."""
        j = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        hit = np.nonzero(self.hashes[j] == h)[0] if len(self.hashes) else np.zeros(0, dtype=np.int64)
        return hit, j[hit]


class EvalIndex:
    """Every evaluation text, indexed for :meth:`matches` (see the module docstring for the three rules)."""

    def __init__(self, texts: list[EvalText], n: int, anywhere: dict[int, _Keys], lines: dict[int, _Keys]) -> None:
        self.texts = texts
        self.n = n
        self._anywhere = anywhere
        self._lines = lines
        self._bits = np.zeros(1 << _BITS, dtype=bool)
        for keys in (*anywhere.values(), *lines.values()):
            self._bits[keys.hashes & np.uint64((1 << _BITS) - 1)] = True
        self._words: dict[int, list[str]] = {}

    @classmethod
    def build(
        cls, texts: Iterable[EvalText], n: int, *, min_words: int = MIN_WORDS, common: int = COMMON_ITEMS
    ) -> EvalIndex:
        texts = list(texts)
        batch = _batch([t.text for t in texts], segments=False)
        lengths = np.diff(np.append(batch.text_start, len(batch.words)))
        anywhere: dict[int, _Keys] = {}
        short: dict[int, _Keys] = {}
        for k, h in _rolling(batch.hashes, n):
            if k == n:
                pos = np.nonzero(batch.end[: len(h)] - np.arange(len(h)) >= n)[0]
                anywhere[n] = _Keys.of(h[pos], batch.owner[pos], pos - batch.text_start[batch.owner[pos]])
            elif (whole := np.nonzero(lengths == k)[0]).size:
                short[k] = _Keys.of(h[batch.text_start[whole]], whole, np.zeros(len(whole), dtype=np.int64))
        lines = {}
        common_keys = _stock_phrases(batch, texts, {k: v for k, v in short.items() if k >= min_words}, common)
        for k, keys in short.items():
            stock = common_keys[k] if k >= min_words else np.ones(len(keys.hashes), dtype=bool)
            lines[k] = keys.subset(stock)
            if k >= min_words:
                anywhere[k] = keys.subset(~stock)
        return cls(texts, n, {k: v for k, v in anywhere.items() if len(v.hashes)}, lines)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def sizes(self) -> dict[str, int]:
        """How many keys each rule holds (for the report)."""
        return {
            "ngrams": len(self._anywhere[self.n].hashes) if self.n in self._anywhere else 0,
            "short_anywhere": sum(len(v.hashes) for k, v in self._anywhere.items() if k != self.n),
            "short_whole_line": sum(len(v.hashes) for v in self._lines.values()),
        }

    def matches(self, text: str, limit: int = 1) -> list[Match]:
        """Up to ``limit`` matches with different evaluation items, in the order they occur in ``text``."""
        return self.scan([text], limit)[0]

    def scan(self, texts: Sequence[str], limit: int = 1) -> list[list[Match]]:
        """:meth:`matches` for many texts at once (hashing is vectorised over all of them)."""
        found: list[list[Match]] = [[] for _ in texts]
        seen: list[set[tuple[str, str]]] = [set() for _ in texts]
        for first, chunk in _chunks(texts):
            batch = _batch(chunk)
            hits = sorted(self._candidates(batch))
            for pos, k, text_idx, eval_idx, eval_pos in hits:
                t = first + text_idx
                words = batch.words[pos : pos + k]
                ev = self.texts[eval_idx]
                if len(found[t]) >= limit or (ev.benchmark, ev.id) in seen[t]:
                    continue
                if words != self._eval_words(eval_idx)[eval_pos : eval_pos + k]:
                    continue  # a hash collision, not an overlap
                seen[t].add((ev.benchmark, ev.id))
                found[t].append(Match(ev.benchmark, ev.id, " ".join(words)))
        return found

    def _candidates(self, batch: _Batch) -> Iterator[tuple[int, int, int, int, int]]:
        """(position, length, text, eval text, eval position) of every window whose hash is a key."""
        mask = np.uint64((1 << _BITS) - 1)
        seg_start, seg_len, seg_text = batch.segments
        for k, h in _rolling(batch.hashes, self.n):
            if k in self._anywhere:
                pos = np.nonzero(self._bits[h & mask])[0]
                pos = pos[batch.end[pos] - pos >= k]  # a window may not run into the next text
                hit, key = self._anywhere[k].find(h[pos])
                yield from _rows(pos[hit], k, batch.owner[pos[hit]], self._anywhere[k], key)
            if k in self._lines:
                at = seg_len == k
                hit, key = self._lines[k].find(h[seg_start[at]])
                yield from _rows(seg_start[at][hit], k, seg_text[at][hit], self._lines[k], key)

    def _eval_words(self, i: int) -> list[str]:
        if i not in self._words:
            self._words[i] = normalise(self.texts[i].text)
        return self._words[i]


def _rows(
    pos: np.ndarray, k: int, text: np.ndarray, keys: _Keys, key: np.ndarray
) -> Iterator[tuple[int, int, int, int, int]]:
    for row in zip(pos.tolist(), text.tolist(), keys.text[key].tolist(), keys.pos[key].tolist(), strict=True):
        yield row[0], k, row[1], row[2], row[3]


def _stock_phrases(batch: _Batch, texts: list[EvalText], short: dict[int, _Keys], common: int) -> dict[int, np.ndarray]:
    """For each short key, whether ``common`` or more different evaluation items contain it."""
    item_of: dict[tuple[str, str], int] = {}
    items = np.array([item_of.setdefault((t.benchmark, t.id), len(item_of)) for t in texts], dtype=np.int64)
    out = {}
    for k, h in _rolling(batch.hashes, max(short, default=0)):
        if k in short:
            pos = np.nonzero(batch.end[: len(h)] - np.arange(len(h)) >= k)[0]
            hit, key = short[k].find(h[pos])
            pairs = np.unique(np.stack([key, items[batch.owner[pos[hit]]]]), axis=1)
            out[k] = np.bincount(pairs[0], minlength=len(short[k].hashes)) >= common
    return out


def _chunks(texts: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
    first, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text) // 6  # about one word per six characters: exact counts are not needed to bound memory
        if size >= _CHUNK_WORDS:
            yield first, texts[first : i + 1]
            first, size = i + 1, 0
    if first < len(texts):
        yield first, texts[first:]


__all__ = ["COMMON_ITEMS", "MIN_WORDS", "EvalIndex", "EvalText", "Match", "normalise"]
