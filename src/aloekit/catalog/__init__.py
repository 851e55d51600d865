"""The dataset catalog: every dataset aloekit reads, declared once, as data.

A :class:`Dataset` names its splits; a :class:`Split` says where its files sit inside a data folder laid out
like ``shared/data``, where its Hub copy is, how its rows are read, and its role (train / eval / both). What a
split is used for is declared on it too: the MCQA benchmarks it is asked as, the red-team suite it is, the
texts decontamination checks. The training sources (:mod:`aloekit.data.sources`), the benchmark registry
(:mod:`aloekit.evaluation.benchmarks`), the red-team suites, TruthfulQA, BBQ, decontamination and the one
guard that keeps evaluation data out of training (:mod:`aloekit.catalog.guard`) all read these declarations;
none of them names a dataset's file.

The declarations import nothing else from aloekit (the guard only its errors), so any module may import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aloekit.catalog.medical import GENERAL, INSTRUCTIONS, MCQ, MMLU_MEDICAL, PUBMEDQA_TEST_IDS
from aloekit.catalog.model import BenchmarkUse, Dataset, HubRef, Kind, Role, Source, Split, SuiteUse, Texts
from aloekit.catalog.safety import BBQ_FILES, SAFETY, TRUTHFULQA_HUB, TRUTHFULQA_MC

# The order is the order of every listing and report: benchmarks as lm-eval's multimedqa lists them, the
# safety sets as decontamination reports them, training sources medical first.
DATASETS: dict[str, Dataset] = {d.name: d for d in (*MCQ, *INSTRUCTIONS, *SAFETY, *GENERAL)}


@dataclass(frozen=True)
class Use:
    """One split of one dataset, for iterating over a kind of use."""

    dataset: Dataset
    split_name: str
    split: Split


def splits() -> Iterator[Use]:
    """Every split of every dataset, in catalog order."""
    for dataset in DATASETS.values():
        for name, split in dataset.splits.items():
            yield Use(dataset, name, split)


def benchmarks() -> Iterator[tuple[BenchmarkUse, Use]]:
    """Every MCQA benchmark with the split it asks."""
    for use in splits():
        for bench in use.split.benchmarks:
            yield bench, use


def suites() -> Iterator[tuple[SuiteUse, Use]]:
    """Every red-team suite with the split it reads."""
    for use in splits():
        if use.split.suite is not None:
            yield use.split.suite, use


def checked_texts() -> Iterator[tuple[Texts, Use]]:
    """The prompt sets decontamination checks besides the benchmarks, named after their dataset."""
    for use in splits():
        if use.split.texts is not None:
            yield use.split.texts, use


@dataclass(frozen=True)
class Refused:
    """An evaluation set that is not a benchmark, refused by name as a training source."""

    name: str
    kind: Kind
    description: str
    files: tuple[str, ...]
    hub: HubRef | None


def refused_names() -> list[Refused]:
    """Evaluation sets outside the benchmarks, by the name a training config would use: the dataset's own name,
    or ``<dataset>_<split>`` when the dataset's other splits are a training source (``medsafetybench_test``)."""
    out: dict[str, Refused] = {}
    for use in splits():
        if use.split.role != "eval" or use.split.benchmarks:
            continue
        name = use.dataset.name if use.dataset.source is None else f"{use.dataset.name}_{use.split_name}"
        before = out.get(name)
        files = (*(before.files if before else ()), *use.split.files)
        hub = before.hub if before and before.hub else use.split.hub
        description = use.split.description or use.dataset.description
        out[name] = Refused(name, use.dataset.kind, description, files, hub)
    return list(out.values())


__all__ = [
    "BBQ_FILES",
    "DATASETS",
    "MMLU_MEDICAL",
    "PUBMEDQA_TEST_IDS",
    "TRUTHFULQA_HUB",
    "TRUTHFULQA_MC",
    "BenchmarkUse",
    "Dataset",
    "HubRef",
    "Kind",
    "Refused",
    "Role",
    "Source",
    "Split",
    "SuiteUse",
    "Texts",
    "Use",
    "benchmarks",
    "checked_texts",
    "refused_names",
    "splits",
    "suites",
]
