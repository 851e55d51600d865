"""The registry of training-data sources: one small adapter per public dataset, declared as data.

``load_source("chatdoctor", data_dir=..., tally=...)`` reads a registered source from a data folder laid out like
``shared/data`` (or from the Hugging Face Hub without one); ``load_source(format="alpaca", path=..., tally=...)``
reads a user's own file in one of :data:`FORMATS`. Either way rows come back as :mod:`aloekit.data.schema` records
named after their source, and a row that cannot be read is counted in the caller's
:class:`~aloekit.data.tally.Tally` by reason (or stops the build in strict mode): never dropped silently, never
fatal for the rest of the file. Whole-file problems (missing file, not JSON, unknown source) are one-line
:class:`~aloekit.errors.UserError`.

Every fact about a dataset (files, Hub copy, splits, layout) comes from :mod:`aloekit.catalog`; evaluation sets
never enter training data, by name, by file or by Hub split (:mod:`aloekit.catalog.guard`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aloekit.catalog import DATASETS, Dataset, HubRef, Kind, guard, refused_names
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import instructions, mcqa, preferences, safety
from aloekit.data.sources.lookalike import lookalike_items
from aloekit.data.sources.mcqa import Row, RowReader, file_rows
from aloekit.data.sources.safety import BenignItem
from aloekit.data.tally import Tally
from aloekit.errors import UserError

Record = MCQItem | ChatSample | HarmfulRequest | PreferencePair | BenignItem


@dataclass(frozen=True)
class Format:
    """How rows of one layout become records."""

    kind: Kind
    parse: Callable[[Row, str], Record]
    """(row, source name) -> record; raises MalformedRow for that row alone."""
    rows: RowReader = file_rows
    """How a local file becomes rows (the Hub always gives one record per row)."""


_FORMATS: dict[str, Format] = {
    # Generic layouts, for the user's own files (see FORMATS).
    "alpaca": Format("chat", instructions.alpaca("open_qa")),
    "sharegpt": Format("chat", instructions.sharegpt("open_qa")),
    "messages": Format("chat", instructions.messages("open_qa")),
    "preference": Format("preference", preferences.preference),
    "mcq": Format("mcq", mcqa.mcq_train),
    "medqa": Format("mcq", mcqa.medqa_train),
    "medmcqa": Format("mcq", mcqa.medmcqa_train(cop_base=1), mcqa.medmcqa_rows),
    "harmful": Format("harmful", safety.harmful),
    "benign": Format("benign", safety.benign),
    # Layouts of one registered source each.
    "medmcqa_hub": Format("mcq", mcqa.medmcqa_train(cop_base=0)),
    "pubmedqa_pool": Format("mcq", mcqa.pubmedqa_train, mcqa.pubmedqa_pool_rows),
    "pubmedqa": Format("mcq", mcqa.pubmedqa_train),
    "pubmedqa_qiaojin": Format("mcq", mcqa.pubmedqa_qiaojin_train),
    "mmlu_csv": Format("mcq", mcqa.mmlu_csv_train, mcqa.mmlu_csv_rows),
    "mmlu_hub": Format("mcq", mcqa.mmlu_hub_train),
    "headqa": Format("mcq", mcqa.headqa_train),
    "medicationqa": Format("chat", instructions.medicationqa),
    "dialogue_alpaca": Format("chat", instructions.alpaca("dialogue")),
    "capybara": Format("chat", instructions.capybara),
    "general_sharegpt": Format("chat", instructions.sharegpt("general")),
    "medsafetybench": Format("harmful", safety.medsafetybench),
}

FORMATS: tuple[str, ...] = (
    "alpaca",
    "sharegpt",
    "messages",
    "preference",
    "mcq",
    "medqa",
    "medmcqa",
    "harmful",
    "benign",
)
"""Layouts a user's own file may be in (``format=``); see each parser's docstring for the fields it reads."""


@dataclass(frozen=True)
class SourceSpec:
    """A training source as :func:`load_source` reads it, built from its catalog entry (:mod:`aloekit.catalog`)."""

    name: str
    kind: Kind
    description: str
    local: str | None
    """Default path (a file or a glob) inside a data dir laid out like ``shared/data``."""
    hub: HubRef | None
    """The Hub dataset, config and split, for users with the Hub."""
    general: bool = False
    """General (non-medical) instruction data, counted in a mixture's general share."""
    evaluation_only: bool = False
    """An evaluation set: refused as training input, by name and by path."""
    format: str | None = None
    """Layout of the local file (a key of the format table); None for evaluation-only sources."""
    hub_format: str | None = None
    """Layout of the Hub rows, when it differs from the local file's."""
    built_in: Callable[[], list[Record]] | None = None
    """Records shipped with aloekit itself (no file, no Hub): the source reads these."""


def _lookalikes() -> list[Record]:
    return list(lookalike_items())


_BUILT_IN: dict[str, Callable[[], list[Record]]] = {"lookalike": _lookalikes}


def _training(dataset: Dataset) -> SourceSpec:
    assert dataset.source is not None
    local, hub = dataset.training_split("local"), dataset.training_split("hub")
    fmt = local.format if local else None
    hub_fmt = (hub.hub_format or hub.format) if hub else None
    return SourceSpec(
        dataset.name,
        dataset.kind,
        dataset.description,
        local.files[0] if local and local.files else None,
        hub.hub if hub else None,
        general=dataset.source.general,
        format=fmt or hub_fmt,
        hub_format=hub_fmt if hub_fmt != (fmt or hub_fmt) else None,
        built_in=_BUILT_IN[dataset.source.built_in] if dataset.source.built_in else None,
    )


SOURCES: dict[str, SourceSpec] = {
    **{d.name: _training(d) for d in DATASETS.values() if d.source is not None},
    **{
        r.name: SourceSpec(r.name, r.kind, r.description, ", ".join(r.files), r.hub, evaluation_only=True)
        for r in refused_names()
    },
}
"""Every training source by name, then the evaluation sets refused by name (all from the catalog)."""


# --- loading --------------------------------------------------------------------------------------------------


def load_source(
    name: str | None = None,
    *,
    format: str | None = None,
    path: Path | None = None,
    hub: str | None = None,
    data_dir: Path | None = None,
    tally: Tally,
    limit: int | None = None,
) -> list[Record]:
    """Records of a registered source (``name``) or of a user file / Hub dataset in a generic ``format``.

    A registered source reads ``path`` if given, else ``data_dir / spec.local``, else its Hub copy; ``hub`` is a
    Hub id ``owner/name[:config][@split]`` (split defaults to train). Every record's source is ``name`` (or the
    file stem / Hub dataset name); ids are the source's own, else ``<file>:<n>``. At most ``limit`` records.
    Malformed rows go to ``tally`` under the stage ``load:<source>``.
    """
    spec = _spec(name) if name is not None else None
    if spec is None and format is None:
        raise UserError(f"name a source ({', '.join(_training_names())}) or a format ({', '.join(FORMATS)}) to load")
    if spec is not None and format is not None:
        raise UserError(f"pass either the source name '{spec.name}' or a format ('{format}'), not both")
    if format is not None and format not in FORMATS:
        raise UserError(f"unknown format '{format}': choose from {', '.join(FORMATS)}")

    if spec is not None and spec.built_in is not None and path is None and hub is None:
        return spec.built_in()[:limit]
    if path is not None:
        label, fmt, rows = _local(Path(path), None, spec, format)
    elif hub is None and spec is not None and spec.local and data_dir is not None:
        label, fmt, rows = _local(Path(data_dir) / spec.local, Path(data_dir), spec, format)
    else:
        label, fmt, rows = _hub(hub, spec, format)

    stage = f"load:{label}"
    records: list[Record] = []
    for row in rows:
        if limit is not None and len(records) >= limit:
            break
        record = tally.read(stage, fmt.parse, row, label)
        if record is not None:
            records.append(record)
    return records


def _local(
    location: Path, data_dir: Path | None, spec: SourceSpec | None, format: str | None
) -> tuple[str, Format, Iterator[Row]]:
    files, root = _files(location, spec.local if spec else None, data_dir)
    for file in files:
        guard.refuse_file(file, spec.name if spec else None)
    fmt = _FORMATS[spec.format if spec and spec.format else str(format)]
    label = spec.name if spec else (location.stem if location.is_file() else root.name)
    return label, fmt, (row for file in files for row in fmt.rows(file, root))


def _hub(hub: str | None, spec: SourceSpec | None, format: str | None) -> tuple[str, Format, Iterator[Row]]:
    ref = _hub_ref(hub) if hub is not None else spec.hub if spec else None
    if ref is None:
        if spec is None:
            raise UserError(f"format '{format}' needs a file: pass its path (or a Hub id)")
        raise UserError(
            f"source {spec.name} has no Hub copy: pass a data dir with {spec.local} inside it, or the file's path"
        )
    guard.refuse_hub(ref)
    fmt = _FORMATS[(spec.hub_format or spec.format or "") if spec else str(format)]
    label = spec.name if spec else ref.path.rsplit("/", 1)[-1]
    if spec is None:
        fix = f"to use a local copy, pass its path with format '{format}'"
    elif spec.local:
        fix = f"to use local files, pass a data dir with {spec.local} inside it, or the file's path"
    else:
        fix = "to use a local copy, pass its path"
    return label, fmt, mcqa.hub_rows(ref.path, ref.name, ref.split, fix=fix)


def _spec(name: str) -> SourceSpec:
    spec = SOURCES.get(name)
    if spec is None or spec.evaluation_only:
        guard.refuse_name(name)
    if spec is None:
        raise UserError(
            f"unknown source '{name}': choose from {', '.join(_training_names())}, "
            f"or pass a format ({', '.join(FORMATS)}) with a path"
        )
    return spec


def _training_names() -> list[str]:
    return [s.name for s in SOURCES.values() if not s.evaluation_only]


def _files(location: Path, pattern: str | None, data_dir: Path | None) -> tuple[list[Path], Path]:
    """The files a location names (a file, a folder, or a glob), and the folder their ids are relative to."""
    parts = location.parts
    magic = next((i for i, part in enumerate(parts) if _is_glob(part)), None)
    if magic is not None:
        base = Path(*parts[:magic])
        files = sorted(p for p in base.glob("/".join(parts[magic:])) if p.is_file())
    elif location.is_dir():
        base = location
        files = sorted(p for p in base.glob(_tail(pattern)) if p.is_file() and p.suffix in (".json", ".jsonl", ".csv"))
    elif location.is_file():
        base, files = location.parent, [location]
    else:
        raise UserError(f"file not found: {location}; check the path (or the data dir)")
    if not files:
        raise UserError(f"no .json, .jsonl or .csv files match {location}; check the path (or the data dir)")
    return files, data_dir if data_dir is not None else base


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _tail(pattern: str | None) -> str:
    """The part of a source's local pattern to look for inside a folder the user named (``*/*.csv`` for
    ``medsafetybench/train/*/*.csv``; the file name for a plain path; any file for a generic format)."""
    if pattern is None:
        return "*"
    parts = PurePosixPath(pattern).parts
    magic = next((i for i, part in enumerate(parts) if _is_glob(part)), len(parts) - 1)
    return "/".join(parts[magic:])


def _hub_ref(text: str) -> HubRef:
    """``owner/name[:config][@split]``, split train by default."""
    rest, _, split = text.partition("@")
    path, _, config = rest.partition(":")
    if path.count("/") != 1 or not all(path.split("/")):
        raise UserError(f"Hub id '{text}' must look like owner/name[:config][@split], e.g. argilla/dpo-mix-7k")
    return HubRef(path, config or None, split or "train")


__all__ = [
    "FORMATS",
    "SOURCES",
    "BenignItem",
    "Kind",
    "Record",
    "SourceSpec",
    "load_source",
]
