"""Options and helpers several commands share: the model reference, the engine flags, the model record."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aloekit import engines, models
from aloekit.config import EngineConfig
from aloekit.models import DEFAULT_MODEL

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
Threads = Annotated[int | None, typer.Option(min=1, help=EngineConfig.model_fields["threads"].description)]
ApiKey = Annotated[str | None, typer.Option(help="openai backend: bearer token (or $OPENAI_API_KEY).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print results.json to stdout instead of the table.")]


def log(message: str) -> None:
    """Progress and notes go to stderr, so stdout stays the command's result."""
    typer.echo(message, err=True)


def engine_options(
    backend: str,
    base_url: str | None,
    api_key: str | None,
    allow_pickle: bool,
    trust_remote_code: bool,
    seed: int,
    threads: int | None = None,
    *,
    batch_size: int | None = None,
    dtype: str | None = None,
) -> dict[str, object]:
    """Keyword arguments of :func:`aloekit.engines.load_engine` for ``backend``: a served model takes its URL and
    key, a local one the safety switches and what its backend reads (threads, batch size, dtype) when given."""
    if backend == "openai":
        return {"base_url": base_url, "api_key": api_key, "seed": seed}
    options: dict[str, object] = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code, "seed": seed}
    if backend == "llamacpp":
        options["threads"] = threads
    if backend == "hf" and batch_size is not None:
        options["batch_size"] = batch_size
    if backend in ("hf", "vllm") and dtype is not None:
        options["dtype"] = dtype
    return options


def load_evaluated(
    model: str,
    backend: str,
    options: dict[str, object],
    *,
    base_url: str | None,
    allow_pickle: bool,
    trust_remote_code: bool,
) -> tuple[Any, dict[str, Any]]:
    """The engine of a model under evaluation and the record its results name it by.

    A served model's weights are out of reach: its URL and name are what identify it; the default model reference
    means "whatever the server serves" there.
    """
    served = backend == "openai"
    engine = engines.load_engine(backend, None if served and model == DEFAULT_MODEL else model, **options)
    if not served:
        return engine, models.record(model, backend, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    url = getattr(engine, "base_url", base_url)
    return engine, {"reference": engine.model_id, "backend": backend, "fingerprint": f"openai:{url}:{engine.model_id}"}
