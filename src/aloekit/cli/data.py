"""``aloe data ...``: wiring for the data stage (sources, build, chain-of-thought, preference pairs, stats)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel

from aloekit.cli.options import log
from aloekit.data.dataset import stage_columns
from aloekit.errors import UserError

C = TypeVar("C", bound=BaseModel)

data_app = typer.Typer(
    help="Training data: sources, cleaning, dedup, decontamination, chain-of-thought, preference pairs.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder laid out like shared/data (overrides the config's).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty --out folder.")]


def _with_data_dir(config: C, data_dir: Path | None) -> C:
    if data_dir is None:
        return config
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    return config.model_copy(update={"data_dir": data_dir})


@data_app.command("sources")
def sources(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the registered sources: kind, default local path, Hub id."""
    from aloekit.data.sources import SOURCES

    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "local": s.local,
            "hub": f"{s.hub.path}" + (f" ({s.hub.name})" if s.hub.name else "") if s.hub else None,
            "general": s.general,
            "evaluation_only": s.evaluation_only,
            "description": s.description,
        }
        for s in SOURCES.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("source", "kind", "local (inside --data-dir)", "hub", "note")
    for r in rows:
        note = "evaluation only: never training" if r["evaluation_only"] else ("general" if r["general"] else "")
        table.add_row(str(r["name"]), str(r["kind"]), str(r["local"] or ""), str(r["hub"] or ""), note)
    Console().print(table)


@data_app.command("build")
def build(
    config: Annotated[Path, typer.Argument(help="Mixture YAML (sources, weights, caps, cleaning, dedup, ...).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the dataset (written atomically).")],
    data_dir: DataDir = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed row.")] = False,
    overwrite: Overwrite = False,
) -> None:
    """Build a training mixture: read, clean, dedup, decontaminate, mix, split; writes stats and a data card."""
    from aloekit.config import load_yaml
    from aloekit.data.mixture import MixtureConfig
    from aloekit.data.mixture import build as build_mixture

    cfg = load_yaml(config, MixtureConfig, what="mixture config")
    cfg = _with_data_dir(cfg, data_dir)
    if strict:
        cfg = cfg.model_copy(update={"strict": True})
    stats = build_mixture(cfg, out, overwrite=overwrite, progress=sys.stderr.isatty(), log=log)
    _print_stats(stats)
    typer.echo(f"wrote {out} ({stats['train']:,} train, {stats['validation']:,} validation samples)")


@data_app.command("stats")
def stats(
    folder: Annotated[Path, typer.Argument(help="A dataset folder written by `aloe data build` or `aloe data prefs`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Statistics of a built dataset, recomputed from its files (and its build report, when present)."""
    from aloekit.data.inspect import dataset_stats

    result = dataset_stats(folder)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_stats(result)


def _print_stats(stats: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    sources = stats.get("sources") or {}
    assert isinstance(sources, dict)
    stages = stage_columns(sources)
    table = Table(title="rows per source and stage")
    table.add_column("source", no_wrap=True)
    for stage in stages:
        table.add_column(stage, justify="right")
    for label, counts in sources.items():
        table.add_row(label, *(f"{counts.get(s, 0):,}" for s in stages))
    # Piped output (CI logs, files) gets room for every column instead of rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    dropped = stats.get("dropped") or {}
    assert isinstance(dropped, dict)
    if dropped:
        reasons = Table("stage", "reason", "rows", title="rows not kept, by reason")
        for stage, by_reason in dropped.items():
            for reason, d in by_reason.items():
                reasons.add_row(stage, reason, f"{d['count']:,}")
        console.print(reasons)


@data_app.command("cot")
def cot(
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file; rerunning resumes it.")],
    source: Annotated[str | None, typer.Option(help="A registered MCQ source, e.g. medmcqa.")] = None,
    path: Annotated[Path | None, typer.Option(help="A local MCQ file instead of a registered source.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Format of --path: mcq, medqa, medmcqa...")] = None,
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items.")] = None,
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher model reference.")] = "smollm2-135m-instruct",
    backend: Annotated[str, typer.Option("--backend", "-b", help="Engine: hf, vllm, llamacpp or openai.")] = "hf",
    base_url: Annotated[str | None, typer.Option(help="openai backend: server URL ending in /v1.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per explanation.")] = 384,
    retries: Annotated[int, typer.Option(help="Extra attempts (sampled, new seeds) for unverified items.")] = 2,
    batch_size: Annotated[int, typer.Option(help="hf backend: sequences per forward pass.")] = 8,
    chunk: Annotated[int, typer.Option(help="Items per engine call; finished items are saved after each.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the first attempt; retry k uses seed + k.")] = 0,
    blind: Annotated[
        bool, typer.Option("--blind", help="Do not tell the model the answer (Medprompt's self-generated CoT).")
    ] = False,
) -> None:
    """Teacher chain-of-thought for MCQ items, given the gold answer, kept only when it reaches it (resumable)."""
    from aloekit.config import EngineConfig
    from aloekit.data.cot import CoTConfig, generate_cot
    from aloekit.data.schema import MCQItem
    from aloekit.data.sources import load_source
    from aloekit.data.tally import Tally

    if (source is None) == (path is None):
        raise UserError("give exactly one of --source (a registered MCQ source) and --path (a file, with --format)")
    tally = Tally()
    records = load_source(source, format=fmt, path=path, data_dir=data_dir, tally=tally, limit=limit)
    items = [r for r in records if isinstance(r, MCQItem)]
    if not items:
        fix = "chain-of-thought needs MCQ items"
        raise UserError(tally.why_empty(f"{source or path} holds no multiple-choice items", fix))
    if tally.total():
        log(f"skipped {tally.total()} malformed rows: {json.dumps(tally.to_json())}")
    config = CoTConfig(max_tokens=max_tokens, retries=retries, seed=seed, chunk=chunk, blind=blind)
    engine = EngineConfig(model=teacher, backend=backend, base_url=base_url, batch_size=batch_size, seed=seed).load()
    try:
        result = generate_cot(engine, items, out, config, progress=sys.stderr.isatty())
    finally:
        engine.close()
    summary = result.to_json()
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(
        f"{summary['accepted']} of {summary['attempted']} new items verified "
        f"(acceptance {summary['acceptance_rate']:.1%}); {summary['skipped']} already done; wrote {out}"
    )


@data_app.command("prefs")
def prefs(
    config: Annotated[Path, typer.Argument(help="Preference YAML (medical, redteam, benign, reference sections).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the pairs (written atomically).")],
    data_dir: DataDir = None,
    overwrite: Overwrite = False,
) -> None:
    """Build preference pairs for DPO: medical (verified vs the policy's wrong answer), red-teaming, benign,
    reference (a written answer vs the policy's own reply)."""
    from aloekit.config import load_yaml
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    cfg = load_yaml(config, PrefsConfig, what="preference config")
    cfg = _with_data_dir(cfg, data_dir)
    result = build_prefs(cfg, out, overwrite=overwrite, progress=sys.stderr.isatty(), log=log)
    _print_stats(result)
    typer.echo(f"wrote {out} ({result['train']:,} train, {result['validation']:,} validation pairs)")
