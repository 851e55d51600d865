"""``aloe generate`` (one reply from any engine) and ``aloe demo`` (the offline demo)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aloekit import demo as demo_module
from aloekit import engines
from aloekit.cli.options import AllowPickle, ApiKey, Backend, ModelOpt, Threads, TrustCode, engine_options
from aloekit.engines import GenerationRequest
from aloekit.errors import UserError
from aloekit.models import DEFAULT_MODEL


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
    api_key: ApiKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    threads: Threads = None,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Generate a reply to PROMPT with any engine."""
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
    engine = engines.load_engine(
        backend,
        model_name,
        **engine_options(backend, base_url, api_key, allow_pickle, trust_remote_code, seed, threads),
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


def demo(
    model: ModelOpt = "smollm2-135m-instruct",
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per answer.")] = 96,
) -> None:
    """Offline demo: the embedded model answers three medical questions."""
    demo_module.main(model, max_tokens)
