"""The registry of training-data sources: one small adapter per public dataset, declared as data.

``load_source("chatdoctor", data_dir=..., tally=...)`` reads a registered source from a data folder laid out like
``shared/data`` (or from the Hugging Face Hub without one); ``load_source(format="alpaca", path=..., tally=...)``
reads a user's own file in one of :data:`FORMATS`. Either way rows come back as :mod:`aloekit.data.schema` records
named after their source, and a row that cannot be read is counted in the caller's
:class:`~aloekit.data.tally.Tally` by reason (or stops the build in strict mode): never dropped silently, never
fatal for the rest of the file. Whole-file problems (missing file, not JSON, unknown source) are one-line
:class:`~aloekit.errors.UserError`.

Evaluation sets never enter training data: the evaluation-only sources below, every benchmark file of
:data:`aloekit.evaluation.benchmarks.REGISTRY`, and any path that is one of their files are refused.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import instructions, mcqa, preferences, safety
from aloekit.data.sources.mcqa import Row, RowReader, file_rows
from aloekit.data.sources.safety import BenignItem
from aloekit.data.tally import Tally
from aloekit.errors import UserError

if TYPE_CHECKING:
    from aloekit.evaluation.benchmarks import HubRef

Kind = Literal["mcq", "chat", "harmful", "preference", "benign"]
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


SOURCES: dict[str, SourceSpec]
"""Every registered source by name (built on first use: see ``__getattr__``)."""


def _lookalikes() -> list[Record]:
    from aloekit.data.sources.lookalike import lookalike_items

    return list(lookalike_items())


@cache
def _declare() -> dict[str, SourceSpec]:
    # Imported here, not at the top: benchmarks imports this package (for mcqa), so a module-level import would
    # be circular whenever benchmarks is imported first.
    from aloekit.evaluation.benchmarks import HubRef

    specs = (
        # --- medical multiple choice ------------------------------------------------------------------------
        SourceSpec(
            "medmcqa",
            "mcq",
            "MedMCQA (Indian medical entrance exams) with expert explanations. The local file is the MIRAGE copy of "
            "the VALIDATION split (cop 1-based), which is also the medmcqa evaluation benchmark: train on it only "
            "knowing that (mixtures flag it); the Hub copy is the train split (cop 0-based).",
            "medmcqa/dev.jsonl",
            HubRef("openlifescienceai/medmcqa", None, "train"),
            format="medmcqa",
            hub_format="medmcqa_hub",
        ),
        SourceSpec(
            "medqa",
            "mcq",
            "MedQA USMLE, 4 options, train split.",
            "medqa/train.jsonl",
            HubRef("GBaker/MedQA-USMLE-4-options", None, "train"),
            format="medqa",
        ),
        SourceSpec(
            "pubmedqa",
            "mcq",
            "PubMedQA PQA-L, the 500 labeled questions outside the official test split (ori_pqal.json minus the "
            "PMIDs of test_ground_truth.json); abstract as context, long answer as explanation.",
            "pubmedqa/ori_pqal.json",
            HubRef("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "train+validation"),
            format="pubmedqa_pool",
            hub_format="pubmedqa",
        ),
        SourceSpec(
            "pubmedqa_artificial",
            "mcq",
            "PubMedQA PQA-A, 211k automatically labeled yes/no questions (same layout as PQA-L).",
            "pubmedqa/ori_pqaa.json",
            HubRef("qiaojin/PubMedQA", "pqa_artificial", "train"),
            format="pubmedqa",
            hub_format="pubmedqa_qiaojin",
        ),
        SourceSpec(
            "mmlu",
            "mcq",
            "MMLU training material: locally the medical subjects' dev (5-shot exemplar) files, on the Hub the "
            "auxiliary_train set (ARC, OBQA, RACE, ... in MMLU's layout).",
            "mmlu_medical/dev/*.csv",
            HubRef("cais/mmlu", "auxiliary_train", "train"),
            format="mmlu_csv",
            hub_format="mmlu_hub",
        ),
        SourceSpec(
            "headqa",
            "mcq",
            "HEAD-QA (Spanish healthcare specialisation exams), English, train split.",
            "headqa/train.jsonl",
            HubRef("EleutherAI/headqa", "en", "train"),
            format="headqa",
        ),
        SourceSpec(
            "medexqa",
            "mcq",
            "MedExQA train split (20 questions over 5 specialties; medagents-benchmark layout).",
            "medexqa/train.jsonl",
            None,
            format="medqa",
        ),
        SourceSpec(
            "lookalike",
            "benign",
            "Benign look-alike requests written for aloekit (homonyms, figurative language, safe targets and "
            "contexts, definitions, history, medical safety questions): prompts only, answered by a responder; "
            "they keep a safety-trained model helpful on safe questions that sound unsafe.",
            None,
            None,
            format="benign",
            built_in=_lookalikes,
        ),
        # --- medical instructions ---------------------------------------------------------------------------
        SourceSpec(
            "medicationqa",
            "chat",
            "MedicationQA consumer medication questions with MedlinePlus answers (Hub copy assumed to keep the "
            "spreadsheet's columns); unanswered questions are counted as 'empty answer'.",
            "medicationqa/derived_medicationqa.json",
            HubRef("truehealth/medicationqa", None, "train"),
            format="medicationqa",
        ),
        SourceSpec(
            "chatdoctor",
            "chat",
            "ChatDoctor patient-doctor dialogues, alpaca layout: locally GenMedGPT-5k (synthetic), on the Hub "
            "HealthCareMagic-100k (real online consultations), two datasets of the same project.",
            "chatdoctor/chatdoctor5k.json",
            HubRef("lavita/ChatDoctor-HealthCareMagic-100k", None, "train"),
            format="dialogue_alpaca",
        ),
        SourceSpec(
            "medical_meadow",
            "chat",
            "Medical Meadow WikiDoc patient-information Q/A pairs (alpaca layout).",
            "medical_meadow_small/medical_meadow_small.json",
            HubRef("medalpaca/medical_meadow_wikidoc_patient_information", None, "train"),
            format="alpaca",
        ),
        # --- safety -----------------------------------------------------------------------------------------
        SourceSpec(
            "medsafetybench",
            "harmful",
            "MedSafetyBench MedSafety-Improve split: harmful medical requests with safe responses, category 1-9 = "
            "the AMA principle of medical ethics violated (from the file name).",
            "medsafetybench/train/*/*.csv",
            None,
            format="medsafetybench",
        ),
        SourceSpec(
            "advbench",
            "harmful",
            "AdvBench harmful behaviours (general red-teaming) with the compliant opening as harmful_response.",
            "advbench/harmful_behaviors.csv",
            HubRef("walledai/AdvBench", None, "train"),
            format="harmful",
        ),
        # --- general (non-medical), Hub only ----------------------------------------------------------------
        SourceSpec(
            "capybara",
            "chat",
            "Capybara multi-turn general conversations ('conversation': [{input, output}]).",
            None,
            HubRef("LDJnr/Capybara", None, "train"),
            general=True,
            format="capybara",
        ),
        SourceSpec(
            "deita",
            "chat",
            "Deita 10k general instruction data (ShareGPT 'conversations').",
            None,
            HubRef("hkust-nlp/deita-10k-v0", None, "train"),
            general=True,
            format="general_sharegpt",
        ),
        SourceSpec(
            "dpo_mix_7k",
            "preference",
            "Argilla dpo-mix-7k general preference pairs (chosen / rejected as whole conversations).",
            None,
            HubRef("argilla/dpo-mix-7k", None, "train"),
            general=True,
            format="preference",
        ),
        # HelpSteer is not registered: it ships per-response scores, not pairs, and the pairing rule is a recipe
        # decision rather than a layout.
        # --- evaluation sets: refused as training input -----------------------------------------------------
        SourceSpec(
            "xstest",
            "benign",
            "XSTest over-refusal prompts and human-labelled model completions.",
            "xstest/**",
            HubRef("walledai/XSTest", None, "test"),
            evaluation_only=True,
        ),
        SourceSpec(
            "harmbench",
            "harmful",
            "HarmBench harmful behaviours (test and validation).",
            "harmbench/*.csv",
            HubRef("walledai/HarmBench", "standard", "train"),
            evaluation_only=True,
        ),
        SourceSpec(
            "medsafetybench_test",
            "harmful",
            "MedSafetyBench MedSafety-Eval split.",
            "medsafetybench/test/*/*.csv",
            None,
            evaluation_only=True,
        ),
        SourceSpec(
            "truthfulqa",
            "mcq",
            "TruthfulQA.",
            "truthfulqa/*",
            HubRef("truthfulqa/truthful_qa", "multiple_choice", "validation"),
            evaluation_only=True,
        ),
        SourceSpec("bbq", "mcq", "BBQ social-bias benchmark.", "bbq/*.jsonl", None, evaluation_only=True),
    )
    return {s.name: s for s in specs}


def __getattr__(name: str) -> Any:
    if name == "SOURCES":
        return _declare()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def evaluation_files() -> dict[str, str]:
    """Files (paths or globs inside a data dir) that hold evaluation data, with what each is."""
    from aloekit.evaluation.benchmarks import REGISTRY

    files = {b.local: f"the {b.name} benchmark" for b in REGISTRY.values() if b.local}
    for b in REGISTRY.values():
        if b.format == "pubmedqa" and b.local:
            # benchmarks.load reads the official test PMIDs from this file beside the labeled set.
            files[str(PurePosixPath(b.local).with_name("test_ground_truth.json"))] = f"the {b.name} benchmark"
    files |= {s.local: s.name for s in _declare().values() if s.evaluation_only and s.local}
    return files


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
        _refuse_evaluation_file(file, spec)
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
    _refuse_evaluation_hub(ref)
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
    from aloekit.evaluation.benchmarks import REGISTRY

    spec = _declare().get(name)
    if spec is None and name in REGISTRY:
        raise UserError(f"{name} is an evaluation set (the {name} benchmark); it may never enter training data")
    if spec is None:
        raise UserError(
            f"unknown source '{name}': choose from {', '.join(_training_names())}, "
            f"or pass a format ({', '.join(FORMATS)}) with a path"
        )
    if spec.evaluation_only:
        what = spec.description.rstrip(".")
        raise UserError(f"{name} is an evaluation set ({what}); it may never enter training data")
    return spec


def _training_names() -> list[str]:
    return [s.name for s in _declare().values() if not s.evaluation_only]


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


def _matches(path: Path, pattern: str) -> bool:
    """Whether the path ends like the data-dir-relative pattern (``*`` may span folders), wherever the dir is."""
    for candidate in {path, path.resolve()}:
        parts = candidate.parts
        if any(fnmatch.fnmatchcase("/".join(parts[-k:]), pattern) for k in range(1, len(parts) + 1)):
            return True
    return False


def _refuse_evaluation_file(path: Path, spec: SourceSpec | None) -> None:
    for pattern, what in evaluation_files().items():
        # A registered source may read its own file even when it is a benchmark's: pubmedqa leaves the test
        # PMIDs out, and medmcqa's only local copy is the validation split, which mixtures flag.
        if spec is not None and pattern == spec.local:
            continue
        if _matches(path, pattern):
            owners = [s.name for s in _declare().values() if s.local == pattern and not s.evaluation_only]
            note = f" (only the '{owners[0]}' source may read it; see its description)" if owners else ""
            raise UserError(f"{path} is an evaluation set ({what}); it may never enter training data{note}")


def _refuse_evaluation_hub(ref: HubRef) -> None:
    from aloekit.evaluation.benchmarks import REGISTRY

    splits = {s.split("[")[0].strip() for s in ref.split.split("+")}
    for b in REGISTRY.values():
        if b.hub and (b.hub.path, b.hub.name) == (ref.path, ref.name) and b.hub.split in splits:
            raise UserError(
                f"{ref.path} ({ref.name or 'default'}, {b.hub.split}) is an evaluation set (the {b.name} benchmark); "
                "it may never enter training data"
            )
    for s in _declare().values():
        if s.evaluation_only and s.hub and s.hub.path == ref.path:
            raise UserError(f"{ref.path} is an evaluation set ({s.name}); it may never enter training data")


def _hub_ref(text: str) -> HubRef:
    """``owner/name[:config][@split]``, split train by default."""
    from aloekit.evaluation.benchmarks import HubRef

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
    "evaluation_files",
    "load_source",
]
