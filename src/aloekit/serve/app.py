"""The OpenAI-compatible FastAPI app: endpoints over the batcher, within the server's limits."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aloekit.engines.base import Engine, Generation, GenerationRequest, PromptLogprobs
from aloekit.errors import UserError
from aloekit.serve.batcher import Batcher
from aloekit.serve.gate import RequestGate
from aloekit.serve.limits import BATCH_WINDOW_S, DEFAULT_MAX_TOKENS, ServerLimits
from aloekit.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    Sampling,
    error_response,
    validation_message,
)

# One logger for the whole server, named as it was before the split (log filters rely on the name).
log = logging.getLogger("aloekit.serve")


def create_app(
    engine: Engine,
    *,
    api_key: str | None,
    limits: ServerLimits,
    served_name: str,
    batch_window_s: float = BATCH_WINDOW_S,
) -> FastAPI:
    """The OpenAI-compatible app over ``engine``. The engine stays owned by the caller (not closed here)."""
    batcher = Batcher(engine, max_batch=limits.max_concurrency, max_queue=limits.max_queue, window_s=batch_window_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    # No /docs or /openapi.json: nothing to gain from publishing them, and less surface on an exposed port.
    app = FastAPI(title="aloe serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.limits = limits
    app.add_middleware(RequestGate, api_key=api_key, max_request_bytes=limits.max_request_bytes)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(UserError)
    async def _user_error(_: Request, exc: UserError) -> JSONResponse:
        return error_response(400, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI answers 422 by default; OpenAI clients expect 400 with an error body.
        message, param = validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return error_response(exc.status_code, str(exc.detail), code=code)

    def check_common(body: Sampling, max_tokens: int, prompts: int = 1) -> None:
        if body.stream:
            raise APIError(400, "streaming is not supported by aloe serve; send stream=false", param="stream")
        if body.model is not None and body.model != served_name:
            raise APIError(
                404,
                f"model '{body.model}' is not served here; this server serves '{served_name}'",
                param="model",
                code="model_not_found",
            )
        if max_tokens > limits.max_tokens:
            raise APIError(
                400,
                f"max_tokens {max_tokens} is above this server's limit of {limits.max_tokens}",
                param="max_tokens",
            )
        work = prompts * body.n * max(max_tokens, 1)  # scoring (max_tokens 0) still costs a pass per prompt
        if work > limits.max_work:
            raise APIError(
                400,
                f"request asks for up to {work:,} tokens (prompts {prompts} x n {body.n} x max_tokens "
                f"{max(max_tokens, 1)}), above this server's per-request cap of {limits.max_work:,}: send fewer "
                "prompts or samples, or a smaller max_tokens",
                param="max_tokens",
                code="request_too_large",
            )

    in_flight: dict[str, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def client_slot(request: Request) -> AsyncIterator[None]:
        """Count the client's requests in flight; one over ``max_per_key`` gets 429, so one client (one key) cannot
        take the whole queue from the others."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        who = (
            "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]
            if scheme.lower() == "bearer" and token.strip()
            else f"addr:{request.client.host if request.client else '?'}"
        )
        if in_flight[who] >= limits.max_per_key:
            raise APIError(
                429,
                f"too many requests in flight for this client ({limits.max_per_key} at most); retry later",
                type="rate_limit_error",
                code="too_many_concurrent_requests",
                headers={"Retry-After": "1"},
            )
        in_flight[who] += 1
        try:
            yield
        finally:
            in_flight[who] -= 1
            if not in_flight[who]:
                del in_flight[who]

    async def run_engine(kind: Literal["generate", "prompt_logprobs"], items: Sequence[Any], top: int = 1) -> list[Any]:
        try:
            return await batcher.submit(kind, items, top)
        except (APIError, UserError):
            raise
        except Exception:
            log.exception("engine call failed")
            raise APIError(500, "internal server error", type="server_error") from None

    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "aloekit"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, http: Request) -> dict[str, Any]:
        max_tokens = next(
            (v for v in (body.max_completion_tokens, body.max_tokens) if v is not None), DEFAULT_MAX_TOKENS
        )
        check_common(body, max_tokens)
        if body.logprobs:
            raise APIError(
                400, "chat logprobs are not supported; use /v1/completions with echo and logprobs", param="logprobs"
            )
        request = GenerationRequest(
            messages=tuple({"role": m.role, "content": m.text()} for m in body.messages),
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            n=body.n,
            stop=body.stops(),
            seed=body.seed,
        )
        async with client_slot(http):
            [gen] = await run_engine("generate", [request])
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
                "logprobs": None,
            }
            for i, (text, reason) in enumerate(zip(gen.texts, gen.finish_reasons, strict=True))
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": choices,
            "usage": usage(gen.prompt_tokens, sum(gen.completion_tokens)),
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http: Request) -> dict[str, Any]:
        max_tokens = DEFAULT_MAX_TOKENS if body.max_tokens is None else body.max_tokens
        prompts = body.prompts()
        check_common(body, max_tokens, len(prompts))
        if body.logprobs is not None and not (body.echo and max_tokens <= 1):
            # Generated tokens' log-probabilities are not part of the Engine protocol; scoring a prompt is.
            raise APIError(
                400,
                "logprobs are only returned for the prompt: send echo=true with max_tokens 0 or 1",
                param="logprobs",
            )
        requests = [
            GenerationRequest(
                prompt=p,
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                n=body.n,
                stop=body.stops(),
                seed=body.seed,
            )
            for p in prompts
        ]
        gens: list[Generation]
        scored: list[PromptLogprobs] = []
        async with client_slot(http):
            if body.logprobs is not None and max_tokens == 0:
                # Pure scoring: no generation at all.
                scored = await run_engine("prompt_logprobs", prompts, max(body.logprobs, 1))
                gens = [Generation([""] * body.n, ["length"] * body.n, len(s.tokens), [0] * body.n) for s in scored]
            else:
                gens = await run_engine("generate", requests)
                if body.logprobs is not None:
                    # max_tokens == 1: the prompt's logprobs, then one entry per sample for the generated token,
                    # scored as the tail of prompt + token (lm-eval reads [ctxlen:-1] and drops that last entry).
                    extended = [p + t for p, g in zip(prompts, gens, strict=True) for t in g.texts]
                    scored = await run_engine("prompt_logprobs", prompts + extended, max(body.logprobs, 1))
        choices: list[dict[str, Any]] = []
        tail_index = len(prompts)
        for p_idx, (prompt, gen) in enumerate(zip(prompts, gens, strict=True)):
            for s_idx, (text, reason) in enumerate(zip(gen.texts, gen.finish_reasons, strict=True)):
                logprobs = None
                if body.logprobs is not None:
                    logprobs = _legacy_logprobs(scored[p_idx])
                    if max_tokens == 1:
                        _append_generated(logprobs, prompt, text, scored[tail_index])
                        tail_index += 1
                choices.append(
                    {
                        "index": p_idx * body.n + s_idx,
                        "text": prompt + text if body.echo else text,
                        "finish_reason": reason,
                        "logprobs": logprobs,
                    }
                )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": choices,
            "usage": usage(sum(g.prompt_tokens for g in gens), sum(sum(g.completion_tokens) for g in gens)),
        }

    return app


def _legacy_logprobs(scored: PromptLogprobs) -> dict[str, list[Any]]:
    n = len(scored.tokens)
    tops = list(scored.top_logprobs) + [None] * (n - len(scored.top_logprobs))
    return {
        "tokens": list(scored.tokens),
        "token_logprobs": list(scored.token_logprobs),
        "top_logprobs": tops[:n],
        "text_offset": list(scored.text_offset),
    }


def _append_generated(logprobs: dict[str, list[Any]], prompt: str, text: str, full: PromptLogprobs) -> None:
    """Append the generated ``text`` (one token) as the last entry of the echo logprobs.

    Its log-probability comes from scoring ``prompt + text``: the entries starting at or after the prompt's end.
    When the tokenizer merged the token into the prompt's last token there is no clean split, and the entry's
    log-probability is null rather than a wrong number.
    """
    tail = [i for i, off in enumerate(full.text_offset) if off >= len(prompt)]
    pieces = "".join(full.tokens[i] for i in tail)
    lp: float | None = None
    top: dict[str, float] | None = None
    if tail and pieces == text and all(full.token_logprobs[i] is not None for i in tail):
        lp = float(sum(full.token_logprobs[i] or 0.0 for i in tail))
        tops = full.top_logprobs
        top = tops[tail[0]] if tail[0] < len(tops) else None
    logprobs["tokens"].append(text)
    logprobs["token_logprobs"].append(lp)
    logprobs["top_logprobs"].append(top)
    logprobs["text_offset"].append(len(prompt))


# --- running ----------------------------------------------------------------------------------------------------
