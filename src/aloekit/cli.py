"""The ``aloe`` command: wiring only. Every command calls a library function that does the work.

Errors the user can fix (:class:`~aloekit.errors.UserError`) print one line and exit 2; heavy libraries are
imported inside commands so ``aloe --help`` and ``aloe models info`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aloekit.cli_data import data_app
from aloekit.cli_export import export_app
from aloekit.cli_medprompt import medprompt_app
from aloekit.cli_review import review_app
from aloekit.cli_train import train_app
from aloekit.errors import UserError
from aloekit.models import DEFAULT_MODEL
from aloekit.safety.styles import DEFAULT_STYLES

try:  # typer >= 0.29 vendors click: its usage errors derive from TyperException, not click.ClickException
    from typer import TyperException as UsageBase
except ImportError:  # older typer raises click's own exceptions
    from click import ClickException as UsageBase  # type: ignore[assignment]

app = typer.Typer(
    name="aloe",
    help="aloekit: turn an open base LLM into an aligned, evaluated healthcare LLM (the Aloe recipe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Resolve, convert and inspect model references.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(export_app, name="export")
app.add_typer(train_app, name="train")
app.add_typer(medprompt_app, name="medprompt")
app.add_typer(review_app, name="review")

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Alias (smollm2-135m-instruct), local folder, .gguf file or Hub id (org/name[@revision]).",
    ),
]
AllowPickle = Annotated[
    bool, typer.Option("--allow-pickle", help="Allow pickle weights (.bin/.pt), which can run code on load.")
]
TrustCode = Annotated[
    bool, typer.Option("--trust-remote-code", help="Run the model's own Python code (config auto_map).")
]
Backend = Annotated[str, typer.Option("--backend", "-b", help="Engine: hf, vllm, llamacpp or openai.")]
Threads = Annotated[
    int | None, typer.Option(min=1, help="llamacpp backend: CPU threads (default: every CPU this process may use).")
]


def _engine_options(
    backend: str,
    base_url: str | None,
    api_key: str | None,
    allow_pickle: bool,
    trust_remote_code: bool,
    seed: int,
    threads: int | None = None,
) -> dict[str, object]:
    if backend == "openai":
        return {"base_url": base_url, "api_key": api_key, "seed": seed}
    options: dict[str, object] = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code, "seed": seed}
    if backend == "llamacpp":
        options["threads"] = threads
    return options


@models_app.command("info")
def models_info(
    ref: Annotated[str, typer.Argument(help="Model reference to resolve and describe.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (its 'path' is the local folder).")
    ] = False,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Resolve REF (converting a GGUF once, into the cache) and print what the model is."""
    from aloekit import models

    resolved = models.resolve(ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    info = models.info(resolved)
    if as_json:
        typer.echo(json.dumps(info.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in info.as_dict().items():
        shown = (
            f"{value:,}"
            if key == "parameters" and value is not None
            else ("present" if value is True else "absent" if value is False else "unknown" if value is None else value)
        )
        table.add_row(key.replace("_", " "), str(shown))
    Console().print(table)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user message (or raw text with --raw).")],
    model: ModelOpt = "smollm2-135m-instruct",
    backend: Backend = "hf",
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send PROMPT as raw text, without the chat template.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    n: Annotated[int, typer.Option(help="Samples to draw.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="openai backend: bearer token (or $OPENAI_API_KEY).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    threads: Threads = None,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Generate a reply to PROMPT with any engine."""
    from aloekit.engines import GenerationRequest, load_engine

    if raw and system:
        raise UserError("--system needs the chat template; drop --raw or --system")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    request = GenerationRequest(
        prompt=prompt if raw else None,
        messages=None if raw else tuple(messages),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        n=n,
        stop=tuple(stop or ()),
        seed=seed,
    )
    model_name: str | None = model if backend != "openai" or model != DEFAULT_MODEL else None
    engine = load_engine(
        backend,
        model_name,
        **_engine_options(backend, base_url, api_key, allow_pickle, trust_remote_code, seed, threads),
    )
    try:
        result = engine.generate([request])[0]
    finally:
        engine.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": engine.model_id,
                    "backend": backend,
                    "texts": result.texts,
                    "finish_reasons": result.finish_reasons,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                }
            )
        )
        return
    for i, text in enumerate(result.texts):
        if n > 1:
            typer.echo(f"--- sample {i + 1}")
        typer.echo(text)


@app.command()
def serve(
    model: ModelOpt = "smollm2-135m-instruct",
    backend: Backend = "hf",
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer KEY' (default: $ALOE_API_KEY if set).")
    ] = None,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted (413 above).")
    ] = 1_000_000,
    max_tokens_limit: Annotated[
        int, typer.Option(min=1, help="Largest max_tokens a request may ask for (400 above).")
    ] = 2048,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="Requests processed at once; more wait in the queue.")
    ] = 8,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests allowed to wait; more get 429.")] = 64,
    max_work: Annotated[
        int, typer.Option(min=1, help="Most tokens one request may ask for: prompts x n x max_tokens (400 above).")
    ] = 8192,
    max_per_key: Annotated[
        int, typer.Option(min=1, help="Requests one client (API key, else address) may have in flight (429 above).")
    ] = 16,
    served_name: Annotated[str | None, typer.Option(help="Model name clients use (default: the reference).")] = None,
    seed: Annotated[int, typer.Option(help="Default sampling seed.")] = 0,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Serve a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models)."""
    from aloekit.engines import BACKENDS, load_engine
    from aloekit.serve import ServerLimits, check_listen, run_server

    # Everything checkable is checked before the model loads (minutes, and gigabytes, for a large one).
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    limits = ServerLimits(
        max_request_bytes=max_request_bytes,
        max_tokens=max_tokens_limit,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_work=max_work,
        max_per_key=max_per_key,
    )
    check_listen(host, port)
    if host not in ("127.0.0.1", "localhost", "::1") and not (api_key or os.environ.get("ALOE_API_KEY")):
        typer.echo(f"warning: serving on {host} without --api-key: anyone who can reach it can use the model", err=True)
    engine = load_engine(backend, model, **_engine_options(backend, None, None, allow_pickle, trust_remote_code, seed))
    run_server(
        engine,
        host=host,
        port=port,
        api_key=api_key or os.environ.get("ALOE_API_KEY"),
        limits=limits,
        served_name=served_name or model,
    )


@app.command("eval")
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
    mode: Annotated[
        str, typer.Option(help="loglik (lm-eval's prompts, acc/acc_norm), generate, or medprompt.")
    ] = "loglik",
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder laid out like shared/data; without it, benchmarks load from the Hub.")
    ] = None,
    backend: Backend = "hf",
    limit: Annotated[
        int | None,
        typer.Option(help="Only the first N questions of each benchmark (--open-ended: a seeded sample of N)."),
    ] = None,
    subset: Annotated[
        int | None, typer.Option(help="A seeded random subset of N questions per benchmark (after --limit).")
    ] = None,
    formulation: Annotated[
        str,
        typer.Option(
            help="loglik mode: letter (lettered options, letters scored; headline acc) or cloze (option texts "
            "scored after the bare question; headline acc_norm)."
        ),
    ] = "letter",
    num_fewshot: Annotated[int, typer.Option(help="Solved examples before each question.")] = 0,
    cot: Annotated[bool, typer.Option("--cot", help="generate mode: reason step by step first.")] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="generate mode: most new tokens (default 32; 512 with --cot; 256 with --open-ended)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="hf backend: sequences per forward pass.")] = 8,
    threads: Threads = None,
    dtype: Annotated[
        str, typer.Option(help="hf/vllm: weights' dtype: auto (fp32 on a CPU), float32, bfloat16 or float16.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for sampling and the bootstrap CIs.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Questions between cache writes (resume granularity).")] = 64,
    base_url: Annotated[str | None, typer.Option(help="openai backend: server URL ending in /v1.")] = None,
    api_key: Annotated[str | None, typer.Option(help="openai backend: bearer token (or $OPENAI_API_KEY).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json to stdout instead of the table.")] = False,
    cot_db: Annotated[
        Path | None, typer.Option("--cot-db", help="medprompt: chain-of-thought database (aloe medprompt db).")
    ] = None,
    examples: Annotated[str, typer.Option(help="medprompt: few-shot examples: knn, random or none.")] = "knn",
    k: Annotated[int, typer.Option("--k", help="medprompt: few-shot examples per question.")] = 5,
    runs: Annotated[int, typer.Option(help="medprompt: choice-shuffle ensemble size (1: no ensemble).")] = 5,
    samples: Annotated[int, typer.Option(help="medprompt: self-consistency samples per run.")] = 1,
    temperature: Annotated[float, typer.Option(help="medprompt: sampling temperature (0: greedy).")] = 0.0,
    retries: Annotated[int, typer.Option(help="medprompt: follow-ups per unreadable answer.")] = 1,
    no_cot: Annotated[bool, typer.Option("--no-cot", help="medprompt: bare answers, no chain-of-thought.")] = False,
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
    exclude: Annotated[
        list[Path] | None,
        typer.Option(help="--open-ended: leave out the items of this dataset folder or .jsonl (repeatable)."),
    ] = None,
    no_embedding: Annotated[
        bool, typer.Option("--no-embedding", help="--open-ended: skip the embedding similarity.")
    ] = False,
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
    from pydantic import ValidationError

    from aloekit.config import MCQAConfig

    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")

    def load_model() -> tuple[Any, dict[str, Any]]:
        from aloekit.engines import load_engine

        options = _engine_options(backend, base_url, api_key, allow_pickle, trust_remote_code, seed, threads)
        if backend == "hf":
            options["batch_size"] = batch_size
        if backend in ("hf", "vllm"):
            options["dtype"] = dtype
        served = backend == "openai"
        engine = load_engine(backend, None if served and model == DEFAULT_MODEL else model, **options)
        if not served:
            return engine, _model_record(model, backend, allow_pickle, trust_remote_code)
        # A served model's weights are out of reach: its URL and name are what identify it.
        url = getattr(engine, "base_url", base_url)
        return engine, {
            "reference": engine.model_id,
            "backend": backend,
            "fingerprint": f"openai:{url}:{engine.model_id}",
        }

    if open_ended or pairwise:
        from aloekit.cli_open_ended import open_ended_eval

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
    try:
        config = MCQAConfig(
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
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"] if str(p) != "medprompt"]
        flag = {"database": "cot-db"}.get("-".join(loc), "-".join(loc).replace("_", "-"))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"--{flag}: {message}" if flag else message) from e
    if ablation and (config.medprompt.database is None or not config.medprompt.k):
        raise UserError("--ablation compares few-shot steps: give --cot-db (aloe medprompt db) and --k >= 1")
    from aloekit.evaluation.mcqa import evaluate, load_benchmarks, table

    loaded = load_benchmarks(config)  # unknown names and bad files fail here, before a model is loaded

    engine, record = load_model()
    try:
        if ablation:
            from aloekit.prompting.ablation import run_ablation
            from aloekit.prompting.ablation import table as ablation_table

            ladder = run_ablation(
                engine, config, out, model=record, progress=sys.stderr.isatty(), log=lambda m: typer.echo(m, err=True)
            )
        else:
            results = evaluate(engine, config, out, model=record, loaded=loaded)
    finally:
        engine.close()
    if ablation:
        if as_json:
            typer.echo(json.dumps(ladder, indent=2))
            return
        from rich.console import Console

        Console().print(ablation_table(ladder))
        typer.echo(f"wrote {out / 'ablation.json'}, {out / 'ablation.png'} and each step under {out / 'steps'}")
        return
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console

    from aloekit.evaluation.breakdown import calibration_table, subject_table

    console = Console()
    console.print(table(results))
    for extra in (subject_table(results), calibration_table(results)):
        if extra is not None:
            console.print(extra)
    typer.echo(f"wrote {out / 'results.json'} and {out / 'samples.jsonl'}")


def _model_record(model: str, backend: str, allow_pickle: bool, trust_remote_code: bool) -> dict[str, object]:
    from aloekit import models

    return models.record(model, backend, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


@app.command("safety")
def safety(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, samples.jsonl and the cache.")],
    model: ModelOpt = "smollm2-135m-instruct",
    suites: Annotated[
        str, typer.Option(help="Comma-separated: advbench, harmbench, medsafetybench, xstest, file:PATH.")
    ] = "advbench,xstest",
    styles: Annotated[str, typer.Option(help="Comma-separated attack styles (aloekit.safety.styles).")] = ",".join(
        DEFAULT_STYLES
    ),
    judge: Annotated[
        str, typer.Option(help="offline (rules, no download) or llm:REF (a model judging with the rubric).")
    ] = "offline",
    judge_backend: Annotated[str, typer.Option(help="Engine of an llm: judge: hf, vllm, llamacpp or openai.")] = "hf",
    judge_base_url: Annotated[str | None, typer.Option(help="Server URL of an openai judge backend.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder laid out like shared/data; else the Hub.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Prompts sampled per suite (seeded; the same for every model).")
    ] = 25,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per reply.")] = 256,
    backend: Backend = "hf",
    base_url: Annotated[str | None, typer.Option(help="openai backend: server URL ending in /v1.")] = None,
    api_key: Annotated[str | None, typer.Option(help="openai backend: bearer token (or $OPENAI_API_KEY).")] = None,
    batch_size: Annotated[int, typer.Option(help="hf backend: sequences per forward pass.")] = 8,
    threads: Threads = None,
    dtype: Annotated[
        str, typer.Option(help="hf/vllm: weights' dtype: auto (fp32 on a CPU), float32, bfloat16 or float16.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the prompt sample and the bootstrap CIs.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json to stdout instead of the table.")] = False,
    bias: Annotated[bool, typer.Option("--bias", help="Also BBQ (bias; needs --data-dir), by log-likelihood.")] = False,
    bbq_limit: Annotated[int | None, typer.Option(help="BBQ: questions sampled per category (seeded).")] = 100,
    truthfulness: Annotated[
        bool, typer.Option("--truthfulness", help="Also TruthfulQA MC1/MC2, by log-likelihood.")
    ] = False,
    truthfulqa_limit: Annotated[int | None, typer.Option(help="TruthfulQA: only the first N questions.")] = None,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Red-team a model (attack success by suite, style and category), measure over-refusal (XSTest) and, with
    --bias / --truthfulness, BBQ and TruthfulQA; write a risk assessment from what was measured."""
    from aloekit.engines import load_engine
    from aloekit.evaluation.redteam import load_suite, table
    from aloekit.safety.evaluate import evaluate_safety
    from aloekit.safety.judge import OfflineJudge

    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    names = [s.strip() for s in suites.split(",") if s.strip()]
    chosen_styles = [s.strip() for s in styles.split(",") if s.strip()]
    if not names:
        raise UserError("--suites names no suite: give e.g. advbench,xstest or file:PATH")
    for name in names:
        load_suite(name, data_dir)  # unknown suites and missing, bad or empty files fail here, before a model loads
    if judge != "offline" and not judge.startswith("llm:"):
        raise UserError(f"--judge {judge}: use offline or llm:REF (a model reference)")
    if bias and data_dir is None:
        raise UserError("--bias reads BBQ from the data folder: add --data-dir (a folder with bbq/*.jsonl)")

    options = _engine_options(backend, base_url, api_key, allow_pickle, trust_remote_code, seed, threads)
    if backend == "hf":
        options["batch_size"] = batch_size
    if backend in ("hf", "vllm"):
        options["dtype"] = dtype
    served = backend == "openai"
    engine = load_engine(backend, None if served and model == DEFAULT_MODEL else model, **options)
    judge_engine = None
    try:
        if judge == "offline":
            chosen_judge = OfflineJudge()
        else:
            from aloekit.safety.llm_judge import LLMJudge

            judge_options = _engine_options(judge_backend, judge_base_url, api_key, False, False, seed)
            judge_engine = load_engine(judge_backend, judge.removeprefix("llm:") or None, **judge_options)
            chosen_judge = LLMJudge(judge_engine)  # type: ignore[assignment]
        if served:
            record: dict[str, object] = {
                "reference": engine.model_id,
                "backend": backend,
                "fingerprint": f"openai:{getattr(engine, 'base_url', base_url)}:{engine.model_id}",
            }
        else:
            record = _model_record(model, backend, allow_pickle, trust_remote_code)
        results = evaluate_safety(
            engine,
            chosen_judge,
            out,
            suites=names,
            styles=chosen_styles,
            data_dir=data_dir,
            limit=limit,
            max_tokens=max_tokens,
            seed=seed,
            model=record,
            bias=bias,
            bbq_limit=bbq_limit,
            truthfulness=truthfulness,
            truthfulqa_limit=truthfulqa_limit,
            progress=sys.stderr.isatty(),
            log=lambda m: typer.echo(m, err=True),
        )
    finally:
        engine.close()
        if judge_engine is not None:
            judge_engine.close()
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console

    Console().print(table(results))
    typer.echo(f"wrote {out / 'results.json'}, {out / 'samples.jsonl'} and {out / 'risk.md'}")


@app.command("merge")
def merge_(
    config: Annotated[Path, typer.Argument(help="mergekit YAML (accepted as is), plus optional 'aloekit:' keys.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the merged model (written atomically).")],
    device: Annotated[
        str | None, typer.Option(help="Where the tensor math runs: cpu or cuda (default: the YAML's, else cpu).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for random methods (DARE); default: the YAML's or 0.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty OUT_DIR.")] = False,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Merge models with a mergekit config (DARE-TIES, TIES, linear, task arithmetic, SLERP, ...), streaming."""
    from aloekit.merge.run import merge

    path = merge(
        config,
        out_dir,
        device=device,
        seed=seed,
        overwrite=overwrite,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(f"merged model written to {path}")


@app.command("run")
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (recipes/demo.yaml, recipes/real-data.yaml, ...).")],
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<recipe name>).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder laid out like shared/data (overrides the recipe's).")
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Rerun this stage and every later one, even if finished.")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Rerun only this stage (earlier ones finished).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the recipe and print the plan; load no model or data.")
    ] = False,
) -> None:
    """Run a recipe end to end: data, SFT, merge, DPO (two stages), evaluation, safety, report. Rerun the same
    command after a kill: finished stages are skipped, the interrupted one resumes."""
    from aloekit.recipe import load_recipe
    from aloekit.run import STAGES, run_recipe
    from aloekit.run import dry_run as plan

    if from_stage is not None and only is not None:
        raise UserError("give --from or --only, not both")
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in STAGES:
            raise UserError(f"{flag} {value}: no such stage; the stages are {', '.join(STAGES)}")
    config, text, folder = load_recipe(recipe, run=out, data_dir=data_dir)
    if dry_run:
        from rich.console import Console
        from rich.table import Table

        table = Table("stage", "what it does", "how", title=f"aloe run {recipe} (dry run) -> {folder}")
        for row in plan(config, folder):
            how = row.get("launch") or row.get("engine") or row.get("data_dir") or ""
            table.add_row(row["stage"], row["does"], str(how))
        Console(width=None if sys.stdout.isatty() else 200).print(table)
        typer.echo(f"recipe {recipe} is valid: {len(STAGES)} stages planned, nothing was run")
        return
    started = time.perf_counter()
    manifests = run_recipe(
        config, text, recipe, folder, from_stage=from_stage, only=only, log=lambda m: typer.echo(m, err=True)
    )
    report = (manifests.get("report") or {}).get("outputs", {}).get("html")
    typer.echo(f"finished in {time.perf_counter() - started:.0f} s; run folder {folder}")
    if report:
        typer.echo(f"report: {report}")


@app.command()
def demo(
    model: ModelOpt = "smollm2-135m-instruct",
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per answer.")] = 96,
) -> None:
    """Offline demo: the embedded model answers three medical questions."""
    from aloekit import demo as demo_module

    demo_module.main(model, max_tokens)


DEBUG_HINT = "rerun with --debug for the traceback"


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="On an unexpected error, print the full traceback (also accepted after the command)."
        ),
    ] = False,
) -> None:
    """aloekit: turn an open base LLM into an aligned, evaluated healthcare LLM (the Aloe recipe)."""
    # main() takes --debug out of the arguments before parsing (so it works in any position); the option is
    # declared here only so `aloe --help` lists it.


def _usage_line(e: UsageBase) -> str:
    """One line for a command-line usage error: click's message plus where the help is."""
    message = " ".join(e.format_message().split()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    where = f"'{ctx.command_path} --help'" if ctx is not None else "'aloe --help'"
    return f"error: {message}; see {where}"


def main(argv: list[str] | None = None) -> int:
    """Entry point and the CLI's one error path.

    - usage errors (missing or unknown option, wrong type, unknown command) and :class:`UserError`: one
      ``error: ...`` line on stderr, exit 2 (click's convention for usage errors);
    - an unreadable or unwritable path (OSError naming a file): one line, exit 2;
    - anything else is a bug or an input not checked yet: one line with a hint to rerun with ``--debug``, exit 1.
    ``--debug`` (anywhere before ``--``, or ``ALOE_DEBUG=1``) prints the traceback as well.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut] or os.environ.get("ALOE_DEBUG", "") not in ("", "0")
    args = [a for a in args[:cut] if a != "--debug"] + args[cut:]

    import traceback

    try:
        # typer 0.29 vendors click: its exceptions are typer._click.exceptions.*, which `except click.ClickException`
        # misses; UsageBase is the base class of whichever the installed typer raises.
        returned = app(args=args, prog_name="aloe", standalone_mode=False)
    except UserError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {e.message}", err=True)
        return UserError.exit_code
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except UsageBase as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `aloe` or `aloe data` alone: the help, exit 2 as click does
            e.show()
        else:
            typer.echo(_usage_line(e), err=True)
        return 2  # click's code for usage errors; its other exceptions (a file it cannot open) are the user's too
    except OSError as e:
        if e.filename is None:
            return _unexpected(e, debug)
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {e.filename}: {e.strerror or e}", err=True)
        return 2
    except Exception as e:
        return _unexpected(e, debug)
    # In non-standalone mode typer returns the code of a `typer.Exit` raised inside a command.
    return returned if isinstance(returned, int) else 0


def _unexpected(e: BaseException, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    detail = " ".join(str(e).split())[:300]
    hint = "" if debug else f"; {DEBUG_HINT}"
    typer.echo(f"error: unexpected {type(e).__name__}{': ' + detail if detail else ''}{hint}", err=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
