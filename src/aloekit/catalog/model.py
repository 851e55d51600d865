"""The shape of a catalog entry: a dataset, its splits, and what each split is used for.

Everything here is plain data (strings and tuples). Loaders are named by key, not imported, so the catalog
depends on nothing else in aloekit and every module that reads data can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["train", "eval", "both"]
"""What a split may be used for. ``eval`` splits never enter training data (see :mod:`aloekit.catalog.guard`),
except through the one training source that declares that split's file as its own (and says why);
``both`` splits are trained on and also evaluated (a red-team suite that notes the overlap)."""

Kind = Literal["mcq", "chat", "harmful", "preference", "benign"]
"""The record type a dataset's rows become (:mod:`aloekit.data.schema`)."""


@dataclass(frozen=True)
class HubRef:
    """A Hugging Face Hub dataset, its config, and a split expression (``train``, ``train+validation``)."""

    path: str
    name: str | None
    split: str


@dataclass(frozen=True)
class BenchmarkUse:
    """How the MCQA evaluation reads and asks a split (:mod:`aloekit.evaluation.benchmarks`)."""

    name: str
    format: Literal["medqa", "medmcqa", "pubmedqa", "mmlu", "careqa", "headqa"]
    """Row reader of :mod:`aloekit.data.sources.mcqa`."""
    prompt: Literal["medqa", "medmcqa", "pubmedqa", "mmlu", "headqa"]
    """Which lm-eval prompt (:mod:`aloekit.evaluation.prompts`)."""
    fewshot: str | None = None
    """The split of the same dataset that holds the few-shot exemplars."""
    choices: Literal["labels", "texts"] = "labels"
    subject: str | None = None
    lm_eval_task: str | None = None


@dataclass(frozen=True)
class SuiteUse:
    """How red-teaming reads a split (:mod:`aloekit.evaluation.redteam`)."""

    name: str
    prompt: str
    """Column with the request in the local files."""
    category: str | None = None
    """Column with the harm category; None: from the file name (``category_<N>``) or none."""
    context: str | None = None
    """Column with text the request refers to (HarmBench's ContextString), put before the request."""
    hub_prompt: str = "prompt"
    hub_category: str | None = None
    kind: Literal["harmful", "xstest"] = "harmful"
    note: str = ""


@dataclass(frozen=True)
class Texts:
    """How decontamination reads a split's texts (:mod:`aloekit.data.decontaminate`).

    Each group of fields is joined (one per line) into one text; the first group's fields must be present in
    every row, later groups are optional (HarmBench's ``ContextString`` is empty for most rows).
    """

    fields: tuple[tuple[str, ...], ...]
    id_field: str | None = None


@dataclass(frozen=True)
class Split:
    role: Role
    files: tuple[str, ...] = ()
    """Paths or globs inside a data folder laid out like ``shared/data``; the first is the main file."""
    hub: HubRef | None = None
    format: str | None = None
    """Training layout of the local files (a key of :mod:`aloekit.data.sources`' format table)."""
    hub_format: str | None = None
    """Training layout of the Hub rows, when it differs from the local files'."""
    description: str = ""
    benchmarks: tuple[BenchmarkUse, ...] = ()
    suite: SuiteUse | None = None
    texts: Texts | None = None
    """Set when decontamination checks this split outside the benchmarks (safety and bias prompt sets)."""


@dataclass(frozen=True)
class Source:
    """How training reads a dataset (:mod:`aloekit.data.sources`): which split locally, which on the Hub."""

    local: str | None = None
    hub: str | None = None
    general: bool = False
    """General (non-medical) instruction data, counted in a mixture's general share."""
    built_in: str | None = None
    """Records shipped with aloekit itself (a key of the sources' built-in table): no file, no Hub."""


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: Kind
    description: str
    splits: Mapping[str, Split] = field(default_factory=dict)
    source: Source | None = None
    """None: an evaluation set, refused as training input by name and by file."""

    def split(self, name: str) -> Split:
        return self.splits[name]

    def training_split(self, which: Literal["local", "hub"]) -> Split | None:
        """The split the training source reads from a data folder (``local``) or from the Hub."""
        name = None if self.source is None else getattr(self.source, which)
        return None if name is None else self.splits[name]


__all__ = ["BenchmarkUse", "Dataset", "HubRef", "Kind", "Role", "Source", "Split", "SuiteUse", "Texts"]
