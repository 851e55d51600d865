"""``aloe eval``: multiple-choice benchmarks (loglik, generate, Medprompt and its ablation ladder); with
``--open-ended`` or ``--pairwise``, free-text answers (:mod:`aloekit.cli.eval_open_ended`).

Most flags are fields of :class:`~aloekit.config.MCQAConfig`, :class:`~aloekit.config.MedpromptSettings`,
:class:`~aloekit.config.OpenEndedConfig` and :class:`~aloekit.config.EngineConfig`, declared with
:func:`~aloekit.cli.fields.field_option`: their names, defaults and help come from the config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aloekit.cli.eval_open_ended import open_ended_eval
from aloekit.cli.fields import build_config, field_option, negated_option
from aloekit.cli.options import (
    AllowPickle,
    ApiKey,
    AsJson,
    Backend,
    ModelOpt,
    TrustCode,
    engine_options,
    load_evaluated,
    log,
)
from aloekit.cli.show import print_json, print_tables
from aloekit.config import EngineConfig, MCQAConfig, MedpromptSettings, OpenEndedConfig
from aloekit.errors import UserError

# Where a config's field and its flag differ: the medprompt database is --cot-db, and a check of the settings as a
# whole (no single field) is shown without a flag.
FLAGS = {"medprompt.database": "cot-db", "medprompt": ""}


def eval_(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, samples.jsonl and the cache.")],
    benchmarks: Annotated[
        str | None,
        typer.Option(
            "--benchmarks",
            help="Comma-separated benchmarks or groups, e.g. mmlu_anatomy,pubmedqa; with --open-ended: "
            "medicationqa, medical_meadow, chatdoctor or file:PATH (question, reference per line).",
        ),
    ] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    mode: str = field_option(MCQAConfig, "mode"),
    data_dir: Path | None = field_option(MCQAConfig, "data_dir"),
    backend: Backend = "hf",
    # --limit, --max-tokens, --seed and --checkpoint-every feed the open-ended config too: worded for both.
    limit: int | None = field_option(
        MCQAConfig, "limit", help="Only the first N questions of each benchmark (--open-ended: a seeded sample of N)."
    ),
    subset: int | None = field_option(MCQAConfig, "subset"),
    formulation: str = field_option(MCQAConfig, "formulation"),
    num_fewshot: int = field_option(MCQAConfig, "num_fewshot"),
    cot: bool = field_option(MCQAConfig, "cot"),
    max_tokens: int | None = field_option(
        MCQAConfig,
        "max_tokens",
        help="generate mode: most new tokens (default 32; 512 with --cot; 256 with --open-ended).",
    ),
    batch_size: int = field_option(EngineConfig, "batch_size"),
    threads: int | None = field_option(EngineConfig, "threads", min=1),
    dtype: str = field_option(EngineConfig, "dtype"),
    seed: int = field_option(MCQAConfig, "seed"),
    checkpoint_every: int = field_option(MCQAConfig, "checkpoint_every"),
    scoring: str = field_option(MCQAConfig, "scoring"),
    base_url: str | None = field_option(EngineConfig, "base_url"),
    api_key: ApiKey = None,
    as_json: AsJson = False,
    cot_db: Path | None = field_option(MedpromptSettings, "database", "--cot-db", scope="medprompt"),
    examples: str = field_option(MedpromptSettings, "examples", scope="medprompt"),
    k: int = field_option(MedpromptSettings, "k", scope="medprompt"),
    runs: int = field_option(MedpromptSettings, "runs", scope="medprompt"),
    samples: int = field_option(MedpromptSettings, "samples", scope="medprompt"),
    temperature: float = field_option(MedpromptSettings, "temperature", scope="medprompt"),
    retries: int = field_option(MedpromptSettings, "retries", scope="medprompt"),
    no_cot: bool = negated_option(MedpromptSettings, "cot", scope="medprompt"),
    ablation: Annotated[
        bool, typer.Option("--ablation", help="medprompt: run the ladder zero-shot -> ... -> ensemble.")
    ] = False,
    open_ended: Annotated[
        bool,
        typer.Option(
            "--open-ended", help="Free-text answers scored against reference answers (ROUGE-L, embedding, judge)."
        ),
    ] = False,
    pairwise: Annotated[
        bool,
        typer.Option("--pairwise", help="Judge two open-ended runs' answers against each other, in both orders."),
    ] = False,
    # Required fields of the pairwise config, but optional flags: only --pairwise needs them.
    answers_a: Annotated[
        Path | None, typer.Option("--answers-a", help="--pairwise: model A's open-ended run folder or answers file.")
    ] = None,
    answers_b: Annotated[
        Path | None, typer.Option("--answers-b", help="--pairwise: model B's open-ended run folder or answers file.")
    ] = None,
    part: Annotated[
        str | None,
        typer.Option(help="--open-ended: a training source's items whose id hashes into START,END, e.g. 0.8,1."),
    ] = None,
    exclude: list[Path] | None = field_option(OpenEndedConfig, "exclude", scope="--open-ended"),
    no_embedding: bool = negated_option(OpenEndedConfig, "embedding", scope="--open-ended"),
    # The judge's flags default to no judge at all, unlike an EngineConfig's model: declared here.
    judge_model: Annotated[
        str | None, typer.Option(help="--open-ended/--pairwise: judge model (the served name for openai).")
    ] = None,
    judge_backend: Annotated[str, typer.Option(help="Judge engine: hf, vllm, llamacpp or openai.")] = "hf",
    judge_base_url: Annotated[str | None, typer.Option(help="Judge server URL ending in /v1 (openai).")] = None,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Evaluate a model on medical multiple-choice benchmarks (or, with --open-ended, on free-text questions;
    --pairwise compares two models' answers); resumable (rerun the same command after a kill)."""
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")

    def load_model() -> tuple[Any, dict[str, Any]]:
        options = engine_options(
            backend,
            base_url,
            api_key,
            allow_pickle,
            trust_remote_code,
            seed,
            threads,
            batch_size=batch_size,
            dtype=dtype,
        )
        return load_evaluated(
            model, backend, options, base_url=base_url, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
        )

    if open_ended or pairwise:
        mcqa_only = [
            flag
            for flag, given in (
                ("--mode", mode != "loglik"),
                ("--formulation", formulation != "letter"),
                ("--subset", subset is not None),
                ("--num-fewshot", num_fewshot > 0),
                ("--cot", cot),
                ("--cot-db", cot_db is not None),
                ("--ablation", ablation),
                ("--scoring", scoring != "exact"),
            )
            if given
        ]
        if mcqa_only:
            raise UserError(f"{mcqa_only[0]} is a multiple-choice setting: drop it with --open-ended or --pairwise")
        open_ended_eval(
            out=out,
            benchmarks=benchmarks,
            pairwise=pairwise,
            open_ended=open_ended,
            answers_a=answers_a,
            answers_b=answers_b,
            data_dir=data_dir,
            part=part,
            exclude=exclude or [],
            limit=limit,
            max_tokens=max_tokens,
            embedding=not no_embedding,
            judge_model=judge_model,
            judge_backend=judge_backend,
            judge_base_url=judge_base_url,
            seed=seed,
            checkpoint_every=checkpoint_every,
            as_json=as_json,
            load_model=load_model,
        )
        return
    for flag, value, mode_flag in (
        ("--answers-a", answers_a, "--pairwise"),
        ("--answers-b", answers_b, "--pairwise"),
        ("--part", part, "--open-ended"),
        ("--exclude", exclude, "--open-ended"),
    ):
        if value:
            raise UserError(f"{flag} belongs to {mode_flag}: add {mode_flag}, or drop {flag}")
    if judge_model is not None:
        raise UserError("--judge-model judges free-text answers: add --open-ended or --pairwise (or use aloe safety)")
    if benchmarks is None:
        raise UserError("--benchmarks is missing: name benchmarks or groups, e.g. --benchmarks pubmedqa")
    if ablation and mode != "medprompt":
        raise UserError("--ablation is a medprompt ladder: add --mode medprompt")
    if scoring != "exact" and backend != "hf":
        raise UserError(
            f"--scoring {scoring} copies the model to bf16 in the hf engine: use --backend hf, not {backend}"
        )
    config = build_config(
        MCQAConfig,
        flags=FLAGS,
        benchmarks=benchmarks,
        mode=mode,
        formulation=formulation,
        data_dir=data_dir,
        limit=limit,
        subset=subset,
        num_fewshot=num_fewshot,
        cot=cot,
        max_tokens=max_tokens,
        seed=seed,
        checkpoint_every=checkpoint_every,
        scoring=scoring,
        medprompt={
            "database": cot_db,
            "examples": examples,
            "k": k,
            "runs": runs,
            "samples": samples,
            "temperature": temperature,
            "retries": retries,
            "cot": not no_cot,
            "max_tokens": max_tokens if mode == "medprompt" else None,
        },
    )
    if ablation and (config.medprompt.database is None or not config.medprompt.k):
        raise UserError("--ablation compares few-shot steps: give --cot-db (aloe medprompt db) and --k >= 1")
    if ablation:
        _ablation(config, out, load_model, as_json)
    else:
        _multiple_choice(config, out, load_model, as_json)


def _multiple_choice(config: MCQAConfig, out: Path, load_model: Any, as_json: bool) -> None:
    # Deferred: scoring imports numpy and the engines' heavy parts; the checks above run without them.
    from aloekit.evaluation.breakdown import calibration_table, subject_table
    from aloekit.evaluation.mcqa import evaluate, load_benchmarks
    from aloekit.evaluation.mcqa_results import table

    loaded = load_benchmarks(config)  # unknown names and bad files fail here, before a model is loaded
    engine, record = load_model()
    try:
        results = evaluate(engine, config, out, model=record, loaded=loaded)
    finally:
        engine.close()
    if as_json:
        print_json(results)
        return
    print_tables(table(results), subject_table(results), calibration_table(results))
    typer.echo(f"wrote {out / 'results.json'} and {out / 'samples.jsonl'}")


def _ablation(config: MCQAConfig, out: Path, load_model: Any, as_json: bool) -> None:
    from aloekit.evaluation.mcqa import load_benchmarks
    from aloekit.prompting.ablation import run_ablation, table

    load_benchmarks(config)  # as above: a bad benchmark fails before the model loads
    engine, record = load_model()
    try:
        ladder = run_ablation(engine, config, out, model=record, progress=sys.stderr.isatty(), log=log)
    finally:
        engine.close()
    if as_json:
        print_json(ladder)
        return
    print_tables(table(ladder))
    typer.echo(f"wrote {out / 'ablation.json'}, {out / 'ablation.png'} and each step under {out / 'steps'}")
