"""The ``openai`` backend: any OpenAI-compatible server (vLLM, llama.cpp, ``aloe serve``, a hosted teacher).

* Requests run concurrently on one asyncio loop, at most ``max_concurrency`` in flight, so a remote GPU server
  sees a full batch while this process waits on the network, not on compute.
* Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential backoff and jitter,
  honouring ``Retry-After``; other 4xx answers are the caller's mistake and fail at once with the server's
  message.
* Log-likelihoods use the legacy completions API with ``echo`` and ``logprobs`` (what lm-evaluation-harness
  calls ``local-completions``): the server scores ``context + continuation`` and we sum the log-probabilities
  of the tokens that start at or after the context's end. A server that does not return prompt
  log-probabilities (most hosted chat APIs) gets a clear error instead of a made-up score.

The sync methods of the Engine protocol wrap the async core; they also work when called from inside a running
event loop (a notebook, say), by running the loop in a helper thread.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from aloekit.engines.base import (
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    PromptLogprobs,
    truncate_at_stop,
)
from aloekit.errors import UserError
from aloekit.progress import progress_bar

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Answers worth retrying: overload, rate limits and server-side failures."""
SCORE_BATCH = 16
"""Prompts per echo/logprobs request: one HTTP round trip scores a whole batch."""


class OpenAIEngine:
    """Engine over an OpenAI-compatible HTTP API.

    ``base_url`` ends in ``/v1`` (default ``$OPENAI_BASE_URL``); ``api_key`` defaults to ``$OPENAI_API_KEY``.
    ``model`` is the served model's name; None asks the server (``GET /models``) and takes its only model.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        seed: int = 0,
        max_concurrency: int = 8,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        **_: Any,
    ) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise UserError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1) or $OPENAI_BASE_URL")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--base-url '{url}' must start with http:// or https://")
        if max_concurrency < 1:
            raise UserError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.seed = seed
        self.max_concurrency = max_concurrency
        self.timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._transport = transport
        self.model_id = model or self._served_model()

    # --- plumbing ----------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        return httpx.AsyncClient(
            timeout=self.timeout, headers=self._headers(), limits=limits, transport=self._transport
        )

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine to completion from sync code, even when this thread already runs an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(make())  # type: ignore[arg-type]
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = asyncio.run(make())  # type: ignore[arg-type]
            except BaseException as e:
                box["error"] = e

        thread = threading.Thread(target=target, name="aloe-openai")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    async def _request(self, client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
        """One API call with retries; returns the decoded JSON body or raises UserError with the server's words."""
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await client.request(method, url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if last:
                    raise UserError(
                        f"cannot reach {url} after {attempt + 1} attempts ({type(e).__name__}: {e}); "
                        "is the server running and is --base-url right?"
                    ) from e
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError as e:
                    raise UserError(f"{url} answered {response.status_code} with a body that is not JSON") from e
            if response.status_code in RETRY_STATUS and not last:
                await asyncio.sleep(self._delay(attempt, response.headers.get("retry-after")))
                continue
            raise UserError(f"{url} answered HTTP {response.status_code}: {_error_message(response)}{_hint(response)}")
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        # Exponential backoff with full jitter, so many clients retrying at once do not stampede the server.
        return float(self.backoff_s * (2**attempt) * (0.5 + random.random() / 2))

    async def _gather(
        self, calls: Sequence[Callable[[httpx.AsyncClient], Awaitable[T]]], progress: bool, label: str
    ) -> list[T]:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._client() as client:
            with progress_bar(progress, len(calls), label) as advance:

                async def one(call: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
                    async with semaphore:
                        result = await call(client)
                    advance(1)
                    return result

                return list(await asyncio.gather(*(one(c) for c in calls)))

    def _served_model(self) -> str:
        async def ask() -> Any:
            async with self._client() as client:
                return await self._request(client, "GET", "/models")

        body = self._run(ask)
        ids = [str(m.get("id")) for m in (body.get("data") or []) if isinstance(m, dict)]
        if len(ids) != 1:
            listed = ", ".join(ids) or "none"
            raise UserError(f"{self.base_url} serves {len(ids)} models ({listed}); choose one with --model")
        return ids[0]

    # --- generation -------------------------------------------------------------------------------------------

    def _generation_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if not request.greedy:
            body["seed"] = self.seed if request.seed is None else request.seed
        if request.messages is not None:
            return "/chat/completions", {**body, "messages": [dict(m) for m in request.messages]}
        return "/completions", {**body, "prompt": request.prompt}

    async def _generate_one(self, client: httpx.AsyncClient, request: GenerationRequest) -> Generation:
        path, body = self._generation_body(request)
        answer = await self._request(client, "POST", path, body)
        choices = sorted(answer.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != request.n:
            raise UserError(f"{self.base_url}{path} returned {len(choices)} choices for n={request.n}")
        texts: list[str] = []
        reasons: list[Any] = []
        for choice in choices:
            raw = (choice.get("message") or {}).get("content") if path == "/chat/completions" else choice.get("text")
            text, hit = truncate_at_stop(str(raw or ""), request.stop)  # servers differ on stop handling
            texts.append(text)
            reasons.append("length" if choice.get("finish_reason") == "length" and not hit else "stop")
        usage = answer.get("usage") or {}
        total = int(usage.get("completion_tokens") or 0)
        # The API reports one completion total per request; with n > 1 it is split evenly across samples.
        counts = [total // request.n + (1 if i < total % request.n else 0) for i in range(request.n)]
        return Generation(texts, reasons, int(usage.get("prompt_tokens") or 0), counts)

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        calls = [lambda client, r=r: self._generate_one(client, r) for r in requests]
        return self._run(lambda: self._gather(calls, progress, "generate"))

    # --- scoring ----------------------------------------------------------------------------------------------

    async def _score(self, client: httpx.AsyncClient, prompts: list[str], top: int) -> list[PromptLogprobs]:
        body = {
            "model": self.model_id,
            "prompt": prompts,
            "max_tokens": 0,
            "echo": True,
            "logprobs": max(top, 1),
            "temperature": 0.0,
        }
        answer = await self._request(client, "POST", "/completions", body)
        choices = sorted(answer.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != len(prompts):
            raise UserError(f"{self.base_url}/completions returned {len(choices)} choices for {len(prompts)} prompts")
        out = []
        for choice in choices:
            lp = choice.get("logprobs")
            if not lp or not lp.get("tokens") or lp.get("text_offset") is None:
                raise UserError(
                    f"{self.base_url} does not return prompt log-probabilities (echo + logprobs on /completions), "
                    "so it cannot score continuations; use a server that does (vLLM, aloe serve) or the hf backend"
                )
            n = len(lp["tokens"])
            out.append(
                PromptLogprobs(
                    tokens=list(lp["tokens"]),
                    text_offset=[int(o) for o in lp["text_offset"]],
                    token_logprobs=list(lp.get("token_logprobs") or [None] * n),
                    top_logprobs=list(lp.get("top_logprobs") or [None] * n),
                )
            )
        return out

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        chunks = [list(prompts[k : k + SCORE_BATCH]) for k in range(0, len(prompts), SCORE_BATCH)]
        calls = [lambda client, c=c: self._score(client, c, top) for c in chunks]
        results = self._run(lambda: self._gather(calls, False, "score"))
        return [p for chunk in results for p in chunk]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        split = [_move_trailing_space(r.context, r.continuation) for r in requests]
        for i, (context, _) in enumerate(split):
            if not context:
                raise UserError(
                    f"log-likelihood request {i} has an empty context: over HTTP the first token has no "
                    "log-probability, so give a context (or score with the hf backend)"
                )
        prompts = [c + cont for c, cont in split]
        chunks = [list(range(k, min(k + SCORE_BATCH, len(prompts)))) for k in range(0, len(prompts), SCORE_BATCH)]
        calls = [lambda client, c=c: self._score(client, [prompts[i] for i in c], 1) for c in chunks]
        scored = [p for chunk in self._run(lambda: self._gather(calls, progress, "log-likelihood")) for p in chunk]
        return [_continuation_score(i, len(c), s) for i, ((c, _), s) in enumerate(zip(split, scored, strict=True))]

    def close(self) -> None:
        """Nothing held between calls: each call opens and closes its own connection pool."""


# --- pure helpers ----------------------------------------------------------------------------------------------


def _move_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """Trailing spaces of the context belong to the continuation (the same rule as the local backends)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def _continuation_score(index: int, boundary: int, scored: PromptLogprobs) -> Loglikelihood:
    """Sum the log-probabilities of the tokens that start at or after ``boundary`` (the context's length)."""
    ends = [*scored.text_offset[1:], None]
    total, greedy, n = 0.0, True, 0
    for pos, (start, end) in enumerate(zip(scored.text_offset, ends, strict=True)):
        if start < boundary and (end is None or end > boundary):
            raise UserError(
                f"log-likelihood request {index}: the server's tokenizer merges the end of the context and the "
                f"start of the continuation into one token ({scored.tokens[pos]!r}); end the context at a word "
                "boundary or start the continuation with a space"
            )
        if start < boundary:
            continue
        logprob = scored.token_logprobs[pos]
        if logprob is None:
            raise UserError(f"log-likelihood request {index}: the server gave no log-probability for a token")
        total += float(logprob)
        n += 1
        top = scored.top_logprobs[pos] if pos < len(scored.top_logprobs) else None
        # Greedy when no alternative the server lists beats the token itself (ties count as greedy).
        greedy = greedy and bool(top) and float(logprob) >= max(top.values()) - 1e-6  # type: ignore[union-attr]
    if n == 0:
        raise UserError(f"log-likelihood request {index}: the continuation took no tokens on the server")
    return Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=n)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(body)[:200]


def _hint(response: httpx.Response) -> str:
    if response.status_code == 401:
        return " (pass the server's key with --api-key or $OPENAI_API_KEY)"
    if response.status_code == 404:
        return " (check --base-url ends in /v1 and --model names a served model)"
    return ""
