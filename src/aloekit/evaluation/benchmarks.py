"""The benchmark registry: each benchmark is a declaration of the catalog (:mod:`aloekit.catalog`: where its
data lives, which prompt, which choices), not code. Prompts and continuations match EleutherAI
lm-evaluation-harness task for task (``lm_eval_task``), so our log-likelihood scores are comparable with the
numbers the field reports.

A benchmark loads from ``--data-dir`` when one is given (the layout of ``shared/data``: ``local`` below is the
path inside it) and from the Hugging Face Hub otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aloekit import catalog
from aloekit.catalog import MMLU_MEDICAL, HubRef
from aloekit.data.schema import MCQItem
from aloekit.data.sources import load_source, mcqa
from aloekit.data.tally import Tally
from aloekit.errors import UserError

PromptStyle = Literal["medqa", "medmcqa", "pubmedqa", "mmlu", "headqa"]
"""Which lm-eval prompt the benchmark uses (see :mod:`aloekit.evaluation.prompts`)."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    format: Literal["medqa", "medmcqa", "pubmedqa", "mmlu", "careqa", "headqa", "mcq"]
    """How rows are read (:mod:`aloekit.data.sources.mcqa`)."""
    prompt: PromptStyle
    local: str | None
    """Path of the evaluation file inside --data-dir (None: Hub only)."""
    hub: HubRef | None
    """The Hub dataset, config and split (None: local only)."""
    choices: Literal["labels", "texts"] = "labels"
    """Log-likelihood continuations: option letters (or yes/no/maybe), or the option texts themselves (HEAD-QA)."""
    fewshot_local: str | None = None
    fewshot_hub: HubRef | None = None
    subject: str | None = None
    lm_eval_task: str | None = None
    """The equivalent lm-evaluation-harness task, whose prompt and metric this benchmark reproduces."""
    files: tuple[str, ...] = ()
    """Every file the evaluation reads inside --data-dir, ``local`` first (PubMedQA: its test PMIDs too)."""


def _declared(use: catalog.BenchmarkUse, split: catalog.Use) -> Benchmark:
    fewshot = split.dataset.split(use.fewshot) if use.fewshot else None
    return Benchmark(
        name=use.name,
        format=use.format,
        prompt=use.prompt,
        local=split.split.files[0] if split.split.files else None,
        hub=split.split.hub,
        choices=use.choices,
        fewshot_local=fewshot.files[0] if fewshot and fewshot.files else None,
        fewshot_hub=fewshot.hub if fewshot else None,
        subject=use.subject,
        lm_eval_task=use.lm_eval_task,
        files=split.split.files,
    )


REGISTRY: dict[str, Benchmark] = {use.name: _declared(use, split) for use, split in catalog.benchmarks()}
"""Every benchmark of the catalog, by name."""

GROUPS: dict[str, tuple[str, ...]] = {
    # lm-eval's multimedqa: accuracy weighted by benchmark size.
    "multimedqa": ("pubmedqa", "medmcqa", "medqa_4options", *(f"mmlu_{s}" for s in MMLU_MEDICAL)),
    "mmlu_medical": tuple(f"mmlu_{s}" for s in MMLU_MEDICAL),
}


FILE_PREFIX = "file:"
"""``file:PATH``: a benchmark of one's own, a JSON-lines file of aloekit's MCQ schema (``question``, ``options``,
``answer`` index, optional ``id``/``subject``/``explanation``), asked with MMLU's prompt."""


def get(name: str) -> Benchmark:
    """The registered benchmark ``name``, or the ``file:PATH`` benchmark it names."""
    if name.startswith(FILE_PREFIX):
        path = name.removeprefix(FILE_PREFIX)
        return Benchmark(name=name, format="mcq", prompt="mmlu", local=path, hub=None, files=(path,))
    return REGISTRY[name]


def expand(names: str | list[str]) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Benchmark names (groups expanded, duplicates dropped, order kept) and the groups that were asked for."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise UserError("no benchmark named: pass --benchmarks, e.g. mmlu_anatomy,pubmedqa (or a group: multimedqa)")
    benchmarks: list[str] = []
    groups: dict[str, tuple[str, ...]] = {}
    for name in wanted:
        if name in GROUPS:
            groups[name] = GROUPS[name]
            members = GROUPS[name]
        elif name in REGISTRY or name.startswith(FILE_PREFIX):
            members = (name,)
        else:
            known = ", ".join([*REGISTRY, *GROUPS])
            raise UserError(f"unknown benchmark '{name}': choose from {known}, or file:PATH (MCQ JSON lines)")
        benchmarks += [m for m in members if m not in benchmarks]
    return benchmarks, groups


def load(bench: Benchmark, data_dir: Path | None, *, fewshot: bool = False) -> list[MCQItem]:
    """The benchmark's evaluation items (or its few-shot pool), from ``data_dir`` if given, else the Hub."""
    relative = bench.fewshot_local if fewshot else bench.local
    hub = bench.fewshot_hub if fewshot else bench.hub
    if bench.format == "mcq" and not fewshot:
        return _load_file(bench)
    if fewshot and relative is None and hub is None:
        raise UserError(f"benchmark {bench.name} has no few-shot split: use --num-fewshot 0")
    if data_dir is not None:
        if relative is None:
            raise UserError(f"benchmark {bench.name} is only on the Hub ({hub.path if hub else '?'}): drop --data-dir")
        return _load_local(bench, Path(data_dir), relative)
    if hub is None:
        raise UserError(f"benchmark {bench.name} has no Hub copy: pass --data-dir with {relative} inside it")
    return mcqa.load_hub(hub.path, hub.name, hub.split, _hub_parser(bench), relative=relative)


def _load_local(bench: Benchmark, data_dir: Path, relative: str) -> list[MCQItem]:
    path = data_dir / relative
    if not path.is_file():
        raise UserError(f"benchmark {bench.name}: {path} not found; --data-dir must hold {relative}")
    if bench.format == "mmlu":
        return mcqa.load_mmlu_csv(path, bench.subject or "")
    if bench.format == "pubmedqa":
        return mcqa.load_pubmedqa(path, data_dir / bench.files[1])
    parsers = {
        "medqa": mcqa.medqa_row,
        "medmcqa": mcqa.medmcqa_row(cop_base=1),  # the MIRAGE copy that shared/data documents
        "careqa": mcqa.careqa_row,
        "headqa": mcqa.headqa_row,
    }
    return mcqa.load_jsonl(path, parsers[bench.format])


def _load_file(bench: Benchmark) -> list[MCQItem]:
    path = Path(bench.local or "").expanduser()
    if not path.is_file():
        raise UserError(f"benchmark {bench.name}: {path} not found; file:PATH names a JSON-lines MCQ file")
    tally = Tally()
    records = load_source(None, format="mcq", path=path, tally=tally)
    if tally.total():
        # A malformed evaluation row is an error to fix, never a question silently left out of the score.
        first = next(iter(tally.examples.values()))[0]
        raise UserError(f"benchmark {bench.name}: {tally.total()} malformed rows in {path} (first: {first}): fix them")
    return [r for r in records if isinstance(r, MCQItem)]


def _hub_parser(bench: Benchmark) -> mcqa.RowParser:
    if bench.format == "mmlu":
        return mcqa.mmlu_hub_row(bench.subject or "")
    if bench.format == "medqa":
        # The Hub copy keeps MedQA's own fields (question, options, answer_idx), like the local JSON lines.
        return mcqa.medqa_row
    return {
        "medmcqa": mcqa.medmcqa_row(cop_base=0),
        "pubmedqa": mcqa.pubmedqa_hub_row,
        "careqa": mcqa.careqa_row,
        "headqa": mcqa.headqa_row,
    }[bench.format]


__all__ = ["FILE_PREFIX", "GROUPS", "MMLU_MEDICAL", "REGISTRY", "Benchmark", "HubRef", "expand", "get", "load"]
