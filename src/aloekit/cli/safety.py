"""``aloe safety``: red-teaming, over-refusal and (optionally) BBQ and TruthfulQA, driven by
:class:`~aloekit.config.SafetyConfig` (its fields are the flags) and the engine fields of
:class:`~aloekit.config.EngineConfig`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aloekit import engines
from aloekit.cli.fields import build_config, field_option
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
from aloekit.config import EngineConfig, SafetyConfig
from aloekit.errors import UserError
from aloekit.safety.judge import OfflineJudge
from aloekit.safety.llm_judge import LLMJudge


def safety(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, samples.jsonl and the cache.")],
    model: ModelOpt = "smollm2-135m-instruct",
    suites: str = field_option(SafetyConfig, "suites"),
    styles: str = field_option(SafetyConfig, "styles"),
    judge: str = field_option(SafetyConfig, "judge"),
    judge_backend: str = field_option(SafetyConfig, "judge_backend"),
    judge_base_url: str | None = field_option(SafetyConfig, "judge_base_url"),
    data_dir: Path | None = field_option(SafetyConfig, "data_dir"),
    limit: int | None = field_option(SafetyConfig, "limit"),
    max_tokens: int = field_option(SafetyConfig, "max_tokens"),
    backend: Backend = "hf",
    base_url: str | None = field_option(EngineConfig, "base_url"),
    api_key: ApiKey = None,
    batch_size: int = field_option(EngineConfig, "batch_size"),
    threads: int | None = field_option(EngineConfig, "threads", min=1),
    dtype: str = field_option(EngineConfig, "dtype"),
    seed: int = field_option(SafetyConfig, "seed"),
    as_json: AsJson = False,
    bias: bool = field_option(SafetyConfig, "bias"),
    bbq_limit: int | None = field_option(SafetyConfig, "bbq_limit"),
    truthfulness: bool = field_option(SafetyConfig, "truthfulness"),
    truthfulqa_limit: int | None = field_option(SafetyConfig, "truthfulqa_limit"),
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Red-team a model (attack success by suite, style and category), measure over-refusal (XSTest) and, with
    --bias / --truthfulness, BBQ and TruthfulQA; write a risk assessment from what was measured."""
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    config = build_config(
        SafetyConfig,
        suites=suites,
        styles=styles,
        judge=judge,
        judge_backend=judge_backend,
        judge_base_url=judge_base_url,
        data_dir=data_dir,
        limit=limit,
        max_tokens=max_tokens,
        seed=seed,
        bias=bias,
        bbq_limit=bbq_limit,
        truthfulness=truthfulness,
        truthfulqa_limit=truthfulqa_limit,
    )
    # Deferred: red-teaming imports numpy and the catalog's loaders, which `aloe --help` should not wait for.
    from aloekit.evaluation.redteam import load_suite, table

    for name in config.suites:
        load_suite(name, data_dir)  # unknown suites and missing, bad or empty files fail here, before a model loads

    options = engine_options(
        backend, base_url, api_key, allow_pickle, trust_remote_code, seed, threads, batch_size=batch_size, dtype=dtype
    )
    engine, record = load_evaluated(
        model, backend, options, base_url=base_url, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    judge_engine = None
    try:
        if config.judge == "offline":
            chosen_judge: Any = OfflineJudge()
        else:
            judge_options = engine_options(config.judge_backend, config.judge_base_url, api_key, False, False, seed)
            judge_engine = engines.load_engine(
                config.judge_backend, config.judge.removeprefix("llm:") or None, **judge_options
            )
            chosen_judge = LLMJudge(judge_engine)
        results = _evaluate(engine, chosen_judge, out, config, record)
    finally:
        engine.close()
        if judge_engine is not None:
            judge_engine.close()
    if as_json:
        print_json(results)
        return
    print_tables(table(results))
    typer.echo(f"wrote {out / 'results.json'}, {out / 'samples.jsonl'} and {out / 'risk.md'}")


def _evaluate(engine: Any, judge: Any, out: Path, config: SafetyConfig, record: dict[str, Any]) -> dict[str, Any]:
    # Deferred: the evaluation imports numpy and the risk assessment; the checks above run without them.
    from aloekit.safety.evaluate import evaluate_safety

    return evaluate_safety(
        engine,
        judge,
        out,
        suites=config.suites,
        styles=config.styles,
        data_dir=config.data_dir,
        limit=config.limit,
        max_tokens=config.max_tokens,
        seed=config.seed,
        model=record,
        bias=config.bias,
        bbq_limit=config.bbq_limit,
        truthfulness=config.truthfulness,
        truthfulqa_limit=config.truthfulqa_limit,
        progress=sys.stderr.isatty(),
        log=log,
    )
