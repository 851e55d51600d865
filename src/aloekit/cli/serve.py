"""``aloe serve``: a model behind an OpenAI-compatible API, every limit checked before the model loads."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from aloekit import engines
from aloekit.cli.options import AllowPickle, Backend, ModelOpt, TrustCode, engine_options, log
from aloekit.errors import UserError


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
    # Deferred: the server imports fastapi and uvicorn, which every other command can do without.
    from aloekit.serve import ServerLimits, check_listen, run_server

    # Everything checkable is checked before the model loads (minutes, and gigabytes, for a large one).
    if backend not in engines.BACKENDS:
        raise UserError(f"--backend {backend}: choose one of {', '.join(engines.BACKENDS)}")
    limits = ServerLimits(
        max_request_bytes=max_request_bytes,
        max_tokens=max_tokens_limit,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_work=max_work,
        max_per_key=max_per_key,
    )
    check_listen(host, port)
    key = api_key or os.environ.get("ALOE_API_KEY")
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        log(f"warning: serving on {host} without --api-key: anyone who can reach it can use the model")
    engine = engines.load_engine(
        backend, model, **engine_options(backend, None, None, allow_pickle, trust_remote_code, seed)
    )
    run_server(engine, host=host, port=port, api_key=key, limits=limits, served_name=served_name or model)
