"""``aloe eval --open-ended`` and ``aloe eval --pairwise``: wiring only (flags -> config -> library -> table).

The work is in :mod:`aloekit.evaluation.open_ended` and :mod:`aloekit.evaluation.pairwise`; every input is checked
there before a model loads, so a bad file or flag ends in one ``error:`` line and nothing written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from aloekit.cli.fields import build_config
from aloekit.cli.show import print_json, print_tables
from aloekit.config import EngineConfig, OpenEndedConfig, PairwiseConfig
from aloekit.errors import UserError

_IGNORED_WITH_PAIRWISE = ("--benchmarks", "--data-dir", "--part", "--exclude")


def open_ended_eval(
    *,
    out: Path,
    benchmarks: str | None,
    pairwise: bool,
    open_ended: bool,
    answers_a: Path | None,
    answers_b: Path | None,
    data_dir: Path | None,
    part: str | None,
    exclude: list[Path],
    limit: int | None,
    max_tokens: int | None,
    embedding: bool,
    judge_model: str | None,
    judge_backend: str,
    judge_base_url: str | None,
    seed: int,
    checkpoint_every: int,
    as_json: bool,
    load_model: Callable[[], tuple[Any, dict[str, Any]]],
) -> None:
    """Run an open-ended evaluation or a pairwise comparison and print its table (or results.json)."""
    if open_ended and pairwise:
        raise UserError("--open-ended generates answers and --pairwise compares two runs' answers: give one of them")
    judge = _judge(judge_model, judge_backend, judge_base_url, seed)
    progress = sys.stderr.isatty()
    if pairwise:
        from aloekit.evaluation.pairwise import run_pairwise, table

        given = [f for f, v in zip(_IGNORED_WITH_PAIRWISE, (benchmarks, data_dir, part, exclude), strict=True) if v]
        if given:
            raise UserError(f"{given[0]} does not apply to --pairwise, which reads --answers-a and --answers-b")
        if answers_a is None or answers_b is None:
            raise UserError("--pairwise needs --answers-a and --answers-b: two open-ended run folders or answer files")
        if judge is None:
            raise UserError("--pairwise needs a judge: add --judge-model (and --judge-backend/--judge-base-url)")
        config: Any = build_config(
            PairwiseConfig,
            answers_a=answers_a,
            answers_b=answers_b,
            judge=judge,
            limit=limit,
            seed=seed,
            checkpoint_every=checkpoint_every,
        )
        results = run_pairwise(config, out, progress=progress)
        written = f"{out / 'results.json'} and {out / 'judgments.jsonl'}"
    else:
        from aloekit.evaluation.open_ended import run_open_ended, table

        if answers_a is not None or answers_b is not None:
            raise UserError("--answers-a/--answers-b belong to --pairwise; --open-ended generates the answers")
        if benchmarks is None:
            raise UserError("--open-ended needs --benchmarks: medicationqa, medical_meadow, chatdoctor or file:PATH")
        config = build_config(
            OpenEndedConfig,
            benchmarks=benchmarks,
            data_dir=data_dir,
            part=_part(part),
            exclude=tuple(exclude),
            limit=limit,
            max_tokens=max_tokens or 256,
            embedding=embedding,
            judge=judge,
            seed=seed,
            checkpoint_every=checkpoint_every,
        )
        results = run_open_ended(config, out, load_model, progress=progress)
        written = f"{out / 'results.json'} and {out / 'answers.jsonl'}"
    if as_json:
        print_json(results)
        return
    print_tables(table(results))
    typer.echo(f"wrote {written}")


def _judge(model: str | None, backend: str, base_url: str | None, seed: int) -> EngineConfig | None:
    if model is None:
        if base_url is not None:
            raise UserError("--judge-base-url needs --judge-model: the judge's served name")
        return None
    return build_config(EngineConfig, prefix="judge-", model=model, backend=backend, base_url=base_url, seed=seed)


def _part(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        start, end = (float(x) for x in text.split(","))
    except ValueError as e:
        raise UserError(f"--part {text}: give START,END, two numbers such as 0.8,1") from e
    return start, end
