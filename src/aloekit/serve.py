"""``aloe serve``: an OpenAI-compatible HTTP API over any :class:`~aloekit.engines.base.Engine`.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(including the legacy ``echo`` + ``logprobs`` scoring that lm-eval and our ``openai`` backend use for
log-likelihoods). Streaming is not implemented and is refused with a clear 400.

Design, in short:

* Engines are not thread-safe and hold the accelerator, so every engine call runs in ONE worker thread, never
  on the event loop (which keeps answering ``/health``, 401s and 429s while a batch runs).
* A micro-batcher collects the requests that are waiting (plus those arriving within a few milliseconds) and
  hands them to one ``engine.generate([...])`` call; the hf engine batches them on the GPU, so N concurrent
  clients cost about one forward pass per step instead of N. Results are routed back to each HTTP request.
* The wait queue is bounded: beyond ``max_queue`` waiting requests the server answers 429 at once instead of
  piling up memory and latency.
* Every error is an OpenAI-style body ``{"error": {"message", "type", "param", "code"}}``; tracebacks stay in
  the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aloekit.engines.base import Engine, Generation, GenerationRequest, PromptLogprobs
from aloekit.errors import UserError

log = logging.getLogger("aloekit.serve")

BATCH_WINDOW_S = 0.005
"""How long the batcher waits after the first request for others to join its batch. A few milliseconds is
negligible next to a forward pass, and catches clients that fire many requests at once."""
MAX_N = 128
"""Most samples one request may ask for: n multiplies the work a single small request can cause."""
MAX_LOGPROBS = 20
"""Most alternatives per position for ``logprobs`` (vLLM's default limit; OpenAI allows 5)."""
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server. Defaults match ``aloe serve``'s flags."""

    max_request_bytes: int = 1_000_000
    """Largest request body (413 above)."""
    max_tokens: int = 2048
    """Largest ``max_tokens`` a request may ask for (400 above)."""
    max_concurrency: int = 8
    """Most requests handed to the engine in one batch."""
    max_queue: int = 64
    """Most requests waiting for the engine; more get 429."""
    max_work: int = 8192
    """Most tokens one request may ask the engine to generate: prompts x n x max_tokens (400 above). Without it
    one request (128 prompts x 128 samples x 2,048 tokens) could hold the engine for hours; 8,192 tokens is about
    a minute for the embedded 135M model batched on a CPU."""
    max_per_key: int = 16
    """Most requests one client (its bearer token, else its address) may have waiting or running; more get 429.
    Above our openai backend's 8 concurrent requests, well below max_queue, so one client cannot fill the queue."""

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_tokens", "max_concurrency", "max_queue", "max_work", "max_per_key"):
            if getattr(self, name) < 1:
                raise UserError(f"server limit {name} must be >= 1, got {getattr(self, name)}")


# --- errors ------------------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered to the client as an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.message, type=self.type, param=self.param, code=self.code, headers=self.headers
        )


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """Turn FastAPI's list of validation errors into one line naming the first bad field."""
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    # Pydantic adds union members to the path ('prompt.str', 'content.list[TextPart]'); keep field names and
    # list indices only, so the client sees 'messages.0.content'.
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and _is_field(p)]
    param = ".".join(loc)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        if not param:  # no body at all: FastAPI reports the body itself as the missing field
            return "request body is missing: send a JSON object", None
        return f"missing required field '{param}'", param
    if not param:
        return f"request body: {msg}", None
    return f"invalid field '{param}': {msg}", param


def _is_field(part: object) -> bool:
    if isinstance(part, int):
        return True
    return isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool", "list")


# --- request bodies -----------------------------------------------------------------------------------------

# strict: "5" is not an int and true is not a number; clients that send the wrong type get a 400 instead of a
# silently coerced request. Unknown fields (user, presence_penalty, ...) are ignored, as most servers do.
_STRICT = ConfigDict(strict=True, extra="ignore")


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class _Sampling(BaseModel):
    model_config = _STRICT
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    # OpenAI's default temperature is 1; clients that want greedy decoding send 0 (our openai backend always
    # sends it explicitly).
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=0)] | None = None
    logprobs: bool = False


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    echo: bool = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        # Token-id prompts (lm-eval's default for local-completions) need the server's tokenizer on the client.
        if isinstance(value, list) and value and not isinstance(value[0], str):
            raise ValueError("token-id prompts are not supported; send text (lm-eval: tokenized_requests=False)")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# --- micro-batcher ------------------------------------------------------------------------------------------


@dataclass
class _Job:
    kind: Literal["generate", "prompt_logprobs"]
    items: Sequence[Any]  # GenerationRequests or prompt strings
    top: int
    future: asyncio.Future[list[Any]]


@dataclass
class _Batcher:
    """Serialises engine calls onto one worker thread and batches the requests that wait together."""

    engine: Engine
    max_batch: int
    max_queue: int
    window_s: float = BATCH_WINDOW_S
    batches: list[int] = field(default_factory=list)
    """Jobs per engine batch, most recent last (bounded); for tests and debugging."""
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _queue: asyncio.Queue[_Job] | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def waiting(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    def _ensure_running(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[_Job]]:
        # Started lazily on the loop that serves requests: a queue and a task belong to one event loop, and the
        # app may be driven by uvicorn or by a test client with its own loop.
        loop = asyncio.get_running_loop()
        if self._executor is None:
            # One thread: the engine is not thread-safe, and one batch at a time is what the GPU wants anyway.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aloe-engine")
        if self._loop is not loop or self._queue is None or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._task = loop.create_task(self._run())
        return loop, self._queue

    async def submit(
        self, kind: Literal["generate", "prompt_logprobs"], items: Sequence[Any], top: int = 1
    ) -> list[Any]:
        loop, queue = self._ensure_running()
        job = _Job(kind, items, top, loop.create_future())
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            raise APIError(
                429,
                f"server busy: {self.max_queue} requests already waiting; retry later",
                type="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": "1"},
            ) from None
        return await job.future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            batch = [j for j in batch if not j.future.done()]  # requests whose client went away
            if not batch:
                continue
            self.batches = [*self.batches[-99:], len(batch)]
            try:
                await self._execute(batch)
            except Exception as e:  # never let the batcher die: fail this batch, keep serving
                log.exception("engine batch failed")
                for job in batch:
                    _settle(job, error=e)

    async def _execute(self, batch: list[_Job]) -> None:
        gen_jobs = [j for j in batch if j.kind == "generate"]
        if gen_jobs:
            await self._call_grouped(gen_jobs, lambda items: self.engine.generate(items))
        by_top: dict[int, list[_Job]] = defaultdict(list)
        for j in batch:
            if j.kind == "prompt_logprobs":
                by_top[j.top].append(j)
        for top, jobs in by_top.items():
            await self._call_grouped(jobs, lambda items, top=top: self.engine.prompt_logprobs(items, top=top))

    async def _call_grouped(self, jobs: list[_Job], call: Callable[[list[Any]], Sequence[Any]]) -> None:
        """One engine call for all ``jobs``; if it fails, retry each job alone so one bad request (too long a
        prompt, say) fails only its own HTTP request, not its neighbours'."""
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        flat = [item for j in jobs for item in j.items]
        try:
            results = list(await loop.run_in_executor(self._executor, call, flat))
            if len(results) != len(flat):
                raise RuntimeError(f"engine returned {len(results)} results for {len(flat)} requests")
        except Exception as e:
            if len(jobs) == 1:
                _settle(jobs[0], error=e)
                return
            for j in jobs:
                await self._call_grouped([j], call)
            return
        start = 0
        for j in jobs:
            _settle(j, result=results[start : start + len(j.items)])
            start += len(j.items)


def _settle(job: _Job, *, result: list[Any] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():  # cancelled: the client disconnected
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result or [])


# --- ASGI gate: logging, auth, body size --------------------------------------------------------------------


class RequestGate:
    """Outer ASGI layer: one log line per request, bearer-token check and the request-size limit.

    Pure ASGI rather than a BaseHTTPMiddleware so the body can be counted as it arrives (the Content-Length
    header is checked first, but a client can lie or send chunked) and rejected before FastAPI parses it.
    ``aloe review serve`` wraps its app in it too (``api_key=None``: reviewers sign in with cookies instead).
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_logged(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
            await send(message)

        try:
            await self._handle(scope, receive, send_logged)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal server error", type="server_error")(scope, receive, send_logged)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, ms)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path") != "/health" and not self._authorized(headers):
            await error_response(
                401,
                "invalid or missing API key: send 'Authorization: Bearer KEY'",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        too_large = error_response(
            413,
            f"request body larger than the server's limit of {self.max_bytes} bytes",
            code="request_too_large",
        )
        declared = headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
        # Read the whole body here, counting bytes, whatever the header said; bodies are small (<= the limit).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        # Constant-time comparison: the time taken must not reveal how much of the key was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


# --- the app --------------------------------------------------------------------------------------------------


def create_app(
    engine: Engine,
    *,
    api_key: str | None,
    limits: ServerLimits,
    served_name: str,
    batch_window_s: float = BATCH_WINDOW_S,
) -> FastAPI:
    """The OpenAI-compatible app over ``engine``. The engine stays owned by the caller (not closed here)."""
    batcher = _Batcher(engine, max_batch=limits.max_concurrency, max_queue=limits.max_queue, window_s=batch_window_s)

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
        message, param = _validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return error_response(exc.status_code, str(exc.detail), code=code)

    def check_common(body: _Sampling, max_tokens: int, prompts: int = 1) -> None:
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


def check_listen(host: str, port: int) -> None:
    """Fail now, with one line, if the server could not listen on ``host:port`` (a name that does not resolve, an
    address not on this machine, a port in use): ``aloe serve`` calls it before loading the model."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as e:
        reason = e.strerror or str(e)
        raise UserError(f"cannot listen on {host}:{port} ({reason}): choose another --port or --host") from e


def run_server(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    served_name: str | None = None,
) -> None:
    """Serve ``engine`` until interrupted (Ctrl-C), then close it. Binds loopback unless ``host`` says otherwise."""
    import uvicorn

    if not logging.getLogger("aloekit").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("aloekit").addHandler(handler)
        logging.getLogger("aloekit").setLevel(logging.INFO)
    app = create_app(
        engine, api_key=api_key, limits=limits or ServerLimits(), served_name=served_name or engine.model_id
    )
    try:
        # access_log off: the gate already logs one line per request, with its duration.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
    finally:
        engine.close()


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (``http://host:port``).

    For tests and for in-process use (e.g. pointing lm-eval's ``local-completions`` at a model loaded here).
    ``port=0`` takes a free port; the socket is bound before the thread starts, so there is no race for it.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="aloe-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.01)
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
