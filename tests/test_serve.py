"""Specification of ``aloe serve``: an OpenAI-compatible server, spoken to over real HTTP on loopback.

One tiny random llama (real tokenizer and chat template) is loaded per module and shared by the servers here;
tests that need their own limits or batch window start their own app over the same engine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from aloekit.engines.base import Generation, GenerationRequest, LoglikelihoodRequest
from aloekit.engines.hf import HFEngine
from aloekit.serve import ServerLimits, create_app, serve_in_thread

API_KEY = "test-key-0123"
SERVED = "tiny-llama"
TIMEOUT = 30.0
LIMITS = ServerLimits(max_request_bytes=8192, max_tokens=32)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTIONS = (  # of six different token lengths, so results routed to the wrong request would show
    "What are the symptoms of iron deficiency anaemia?",
    "Is aspirin safe?",
    "Name two common side effects of metformin.",
    "What is the normal resting heart rate for an adult?",
    "What is sepsis in a newborn?",
    "What are the warning signs of a stroke in an elderly patient with diabetes and high blood pressure?",
)


# --- fixtures and helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_llama: Path) -> HFEngine:
    return HFEngine.from_reference(str(tiny_llama), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def base_url(engine: HFEngine) -> Iterator[str]:
    """A server with an API key and small limits, shared by the tests that need nothing special."""
    app = create_app(engine, api_key=API_KEY, limits=LIMITS, served_name=SERVED)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=TIMEOUT) as c:
        yield c


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": SERVED, "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


def assert_error(
    response: httpx.Response, status: int, *, type: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    """The response has ``status`` and an OpenAI error body; returns the ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == type
    if param is not None:
        assert error["param"] == param
    return error


def engine_text(engine: HFEngine, content: str, max_tokens: int) -> str:
    [gen] = engine.generate(
        [GenerationRequest(messages=({"role": "user", "content": content},), max_tokens=max_tokens)]
    )
    return gen.text


async def post_all(url: str, path: str, bodies: Sequence[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body at once, each on its own connection."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c:
        return list(await asyncio.gather(*(c.post(path, json=b) for b in bodies)))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# --- health, models, auth -----------------------------------------------------------------------------------------


def test_health_answers_200_without_a_token_even_when_an_api_key_is_set(base_url):
    response = httpx.get(f"{base_url}/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_models_lists_the_served_name(client):
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [SERVED]


def test_a_request_without_authorization_is_refused_with_401(base_url):
    response = httpx.get(f"{base_url}/v1/models", timeout=TIMEOUT)
    assert_error(response, 401, type="authentication_error")
    response = httpx.post(f"{base_url}/v1/chat/completions", json=chat("hi", max_tokens=1), timeout=TIMEOUT)
    assert_error(response, 401, type="authentication_error")


def test_a_wrong_token_gets_401_with_an_openai_error_and_www_authenticate(base_url):
    for header in (f"Bearer {API_KEY}x", f"Bearer {API_KEY[:-1]}", "Bearer", API_KEY, f"Basic {API_KEY}"):
        response = httpx.get(f"{base_url}/v1/models", headers={"Authorization": header}, timeout=TIMEOUT)
        error = assert_error(response, 401, type="authentication_error")
        assert error["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_token_is_accepted_whatever_the_case_of_bearer(base_url):
    for header in (f"Bearer {API_KEY}", f"bearer {API_KEY}"):
        response = httpx.get(f"{base_url}/v1/models", headers={"Authorization": header}, timeout=TIMEOUT)
        assert response.status_code == 200, header


# --- size limits --------------------------------------------------------------------------------------------------


def oversized_chat_body() -> bytes:
    """A valid chat request, over LIMITS.max_request_bytes only because of an ignored field."""
    body = httpx.Request("POST", "/", json=chat("hi", max_tokens=1, user="x" * 3 * LIMITS.max_request_bytes)).read()
    assert len(body) > LIMITS.max_request_bytes
    return body


def test_a_body_over_the_size_limit_declared_in_content_length_gets_413(client):
    body = oversized_chat_body()
    request = client.build_request(
        "POST", "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert request.headers["content-length"] == str(len(body))
    error = assert_error(client.send(request), 413)
    assert error["code"] == "request_too_large"


def test_a_chunked_body_over_the_size_limit_without_content_length_gets_413(client):
    body = oversized_chat_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    request = client.build_request(
        "POST", "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    error = assert_error(client.send(request), 413)
    assert error["code"] == "request_too_large"


def test_a_chunked_body_under_the_limit_is_served(client):
    body = httpx.Request("POST", "/", json=chat("hi", max_tokens=1)).read()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    request = client.build_request(
        "POST", "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert client.send(request).status_code == 200


def test_max_tokens_above_the_server_limit_gets_400_naming_max_tokens(client):
    response = client.post("/v1/chat/completions", json=chat("hi", max_tokens=LIMITS.max_tokens + 1))
    error = assert_error(response, 400, param="max_tokens")
    assert "max_tokens" in error["message"]
    response = client.post(
        "/v1/completions", json={"model": SERVED, "prompt": "hi", "max_tokens": LIMITS.max_tokens + 1}
    )
    assert_error(response, 400, param="max_tokens")
    # Omitting max_tokens means the default (256), which is also above this server's limit.
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert_error(response, 400, param="max_tokens")


# --- validation ---------------------------------------------------------------------------------------------------


def test_invalid_json_gets_400_not_valid_json(client):
    response = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400)
    assert "not valid JSON" in error["message"]


def test_an_empty_body_gets_400_saying_the_body_is_missing(client):
    response = client.post("/v1/chat/completions", content=b"", headers={"Content-Type": "application/json"})
    error = assert_error(response, 400)
    assert "body is missing" in error["message"]


def test_a_json_body_that_is_not_an_object_gets_400(client):
    assert_error(client.post("/v1/chat/completions", json=["not", "an", "object"]), 400)


def test_a_missing_messages_field_gets_400_naming_it(client):
    response = client.post("/v1/chat/completions", json={"model": SERVED, "max_tokens": 1})
    error = assert_error(response, 400, param="messages")
    assert "messages" in error["message"]


def test_a_missing_prompt_gets_400_naming_it(client):
    response = client.post("/v1/completions", json={"model": SERVED, "max_tokens": 1})
    assert_error(response, 400, param="prompt")


def test_max_tokens_sent_as_a_string_gets_400_naming_max_tokens(client):
    response = client.post("/v1/chat/completions", json=chat("hi", max_tokens="5"))
    error = assert_error(response, 400, param="max_tokens")
    assert "max_tokens" in error["message"]


def test_an_unknown_role_gets_400(client):
    body = {"model": SERVED, "messages": [{"role": "wizard", "content": "hi"}], "max_tokens": 1}
    error = assert_error(client.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == "messages.0.role"


def test_streaming_is_refused_with_400(client):
    response = client.post("/v1/chat/completions", json=chat("hi", max_tokens=1, stream=True))
    error = assert_error(response, 400, param="stream")
    assert "stream" in error["message"]


def test_asking_for_another_model_gets_404_model_not_found(client):
    response = client.post("/v1/chat/completions", json=chat("hi", max_tokens=1, model="gpt-4o"))
    error = assert_error(response, 404, param="model")
    assert error["code"] == "model_not_found"
    assert SERVED in error["message"]


def test_an_unknown_path_gets_a_404_json_error_body(client):
    error = assert_error(client.get("/v1/embeddings"), 404)
    assert error["code"] == "not_found"
    assert_error(client.post("/nope", json={}), 404)


def test_a_wrong_method_gets_a_405_json_error_body(client):
    assert_error(client.get("/v1/chat/completions"), 405)


# --- chat completions ---------------------------------------------------------------------------------------------


def test_greedy_chat_returns_the_engines_text_and_token_counts(client, engine):
    content = QUESTIONS[0]
    response = client.post("/v1/chat/completions", json=chat(content, max_tokens=8))
    assert response.status_code == 200, response.text
    body = response.json()
    [gen] = engine.generate(
        [GenerationRequest(messages=({"role": "user", "content": content},), max_tokens=8, temperature=0)]
    )
    assert gen.text  # a non-empty text, or the comparison below proves little
    assert body["object"] == "chat.completion"
    assert body["model"] == SERVED
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": gen.text}
    assert choice["finish_reason"] == gen.finish_reasons[0]
    assert body["usage"] == {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": sum(gen.completion_tokens),
        "total_tokens": gen.prompt_tokens + sum(gen.completion_tokens),
    }


def test_max_completion_tokens_takes_precedence_over_max_tokens(client, engine):
    content = QUESTIONS[1]
    response = client.post("/v1/chat/completions", json=chat(content, max_tokens=8, max_completion_tokens=2))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 2
    assert response.json()["choices"][0]["message"]["content"] == engine_text(engine, content, 2)


def test_n_samples_with_a_seed_have_indices_0_to_n_minus_1_and_are_reproducible(client):
    def sample(seed: int) -> list[str]:
        body = chat(QUESTIONS[2], max_tokens=6, n=3, temperature=1.0, seed=seed)
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        choices = response.json()["choices"]
        assert [c["index"] for c in choices] == [0, 1, 2]
        return [c["message"]["content"] for c in choices]

    first = sample(7)
    assert sample(7) == first
    assert len(set(first)) > 1  # three samples, not one text repeated
    assert sample(8) != first  # the seed is honoured, not replaced by the engine's


# --- completions and prompt scoring -------------------------------------------------------------------------------

CONTEXT = "The patient presents with fever and"
CONTINUATION = " a dry cough after surgery"


def score(client: httpx.Client, prompt: str | list[str], max_tokens: int, **extra: Any) -> httpx.Response:
    body = {"model": SERVED, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": max_tokens, **extra}
    return client.post("/v1/completions", json={"temperature": 0, **body})


def test_echo_logprobs_of_the_continuation_sum_to_the_engines_loglikelihood(client, engine):
    prompt = CONTEXT + CONTINUATION
    response = score(client, prompt, 0)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["text"] == prompt
    lp = choice["logprobs"]
    n = len(lp["tokens"])
    assert n > 2 and len(lp["token_logprobs"]) == len(lp["text_offset"]) == len(lp["top_logprobs"]) == n
    assert "".join(lp["tokens"]) == prompt
    assert lp["token_logprobs"][0] is None
    tail = [v for v, off in zip(lp["token_logprobs"], lp["text_offset"], strict=True) if off >= len(CONTEXT)]
    assert len(tail) >= 2
    [expected] = engine.loglikelihood([LoglikelihoodRequest(CONTEXT, CONTINUATION)])
    assert expected.n_tokens == len(tail)
    assert sum(tail) == pytest.approx(expected.logprob, abs=1e-4)


def test_echo_logprobs_with_max_tokens_1_add_one_final_entry_and_keep_the_rest(client, engine):
    prompt = CONTEXT + CONTINUATION
    scored = score(client, prompt, 0).json()["choices"][0]["logprobs"]
    response = score(client, prompt, 1)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    [gen] = engine.generate([GenerationRequest(prompt=prompt, max_tokens=1)])
    assert choice["text"] == prompt + gen.text
    lp = choice["logprobs"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert len(lp[key]) == len(scored[key]) + 1, key
    assert lp["tokens"][:-1] == scored["tokens"]
    assert lp["text_offset"][:-1] == scored["text_offset"]
    assert lp["token_logprobs"][1:-1] == pytest.approx(scored["token_logprobs"][1:], abs=1e-6)
    assert lp["tokens"][-1] == gen.text
    assert lp["text_offset"][-1] == len(prompt)
    if gen.text:  # the generated token's own log-probability: scored as the tail of prompt + token
        [expected] = engine.loglikelihood([LoglikelihoodRequest(prompt, gen.text)])
        assert lp["token_logprobs"][-1] == pytest.approx(expected.logprob, abs=1e-4)


def test_logprobs_with_max_tokens_above_1_or_without_echo_are_refused(client):
    assert_error(score(client, CONTEXT, 2), 400, param="logprobs")
    response = client.post("/v1/completions", json={"model": SERVED, "prompt": CONTEXT, "logprobs": 1, "max_tokens": 0})
    assert_error(response, 400, param="logprobs")


def test_a_list_of_prompts_returns_one_choice_per_prompt_in_order(client, engine):
    prompts = ["The heart has four", "Aspirin inhibits", "A normal adult temperature is about"]
    body = {"model": SERVED, "prompt": prompts, "max_tokens": 3, "temperature": 0, "echo": True}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    choices = response.json()["choices"]
    gens = engine.generate([GenerationRequest(prompt=p, max_tokens=3) for p in prompts])
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert [c["text"] for c in choices] == [p + g.text for p, g in zip(prompts, gens, strict=True)]
    assert response.json()["usage"]["prompt_tokens"] == sum(g.prompt_tokens for g in gens)
    scored = score(client, prompts, 0).json()["choices"]
    assert ["".join(c["logprobs"]["tokens"]) for c in scored] == prompts


# --- micro-batching -----------------------------------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_get_the_same_answer_as_alone(engine):
    app = create_app(engine, api_key=None, limits=ServerLimits(), served_name=SERVED, batch_window_s=0.2)
    bodies = [chat(q, max_tokens=6) for q in QUESTIONS]
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        alone = []
        for b in bodies:
            response = c.post("/v1/chat/completions", json=b)
            assert response.status_code == 200, response.text
            alone.append(response.json())
        assert app.state.batcher.batches == [1] * len(bodies)
        together = asyncio.run(post_all(url, "/v1/chat/completions", bodies))
        batches = app.state.batcher.batches[len(bodies) :]
    assert [r.status_code for r in together] == [200] * len(bodies)
    assert [r.json()["choices"] for r in together] == [a["choices"] for a in alone]
    # The questions differ in length, so a result routed to the wrong request would show in its usage.
    assert len({a["usage"]["prompt_tokens"] for a in alone}) == len(bodies)
    assert [r.json()["usage"] for r in together] == [a["usage"] for a in alone]
    assert sum(batches) == len(bodies)
    assert max(batches) > 1, batches


class HeldEngine:
    """An engine whose generate() blocks until released, holding the worker thread so the queue fills up.

    Then it answers from ``inner`` when given, or with "ok" per sample.
    """

    name = "held"
    model_id = "held"

    def __init__(self, inner: HFEngine | None = None) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        self.entered.set()
        if not self.release.wait(timeout=TIMEOUT):
            raise RuntimeError("the test never released the engine")
        if self.inner is not None:
            return self.inner.generate(requests)
        return [Generation(["ok"] * r.n, ["stop"] * r.n, 1, [1] * r.n) for r in requests]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Any]:
        raise NotImplementedError

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_one_failing_request_does_not_fail_the_others_in_its_batch(engine):
    too_long = "fever " * (engine.max_length + 50)
    long_request = GenerationRequest(messages=({"role": "user", "content": too_long},))
    assert len(engine.prompt_ids(long_request)) > engine.max_length
    held = HeldEngine(engine)
    app = create_app(held, api_key=None, limits=ServerLimits(), served_name=SERVED, batch_window_s=0)
    bodies = [chat(QUESTIONS[0], max_tokens=5), chat(too_long, max_tokens=5), chat(QUESTIONS[3], max_tokens=5)]
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as c,
        ThreadPoolExecutor(max_workers=len(bodies) + 1) as pool,
    ):
        try:
            # A first request holds the engine, so the three queue up and go to the engine as one batch.
            first = pool.submit(c.post, "/v1/chat/completions", json=chat(QUESTIONS[1], max_tokens=5))
            assert held.entered.wait(timeout=10), "the first request never reached the engine"
            futures = [pool.submit(c.post, "/v1/chat/completions", json=b) for b in bodies]
            wait_until(lambda: app.state.batcher.waiting == len(bodies))
        finally:
            held.release.set()
        good, bad, good2 = [f.result(timeout=TIMEOUT) for f in futures]
        assert first.result(timeout=TIMEOUT).status_code == 200
    assert app.state.batcher.batches == [1, 3]  # the three went to the engine together
    error = assert_error(bad, 400)
    assert str(engine.max_length) in error["message"]
    assert good.status_code == 200, good.text
    assert good2.status_code == 200, good2.text
    assert good.json()["choices"][0]["message"]["content"] == engine_text(engine, QUESTIONS[0], 5)
    assert good2.json()["choices"][0]["message"]["content"] == engine_text(engine, QUESTIONS[3], 5)
    assert good.json()["usage"]["prompt_tokens"] != good2.json()["usage"]["prompt_tokens"]


# --- backpressure -------------------------------------------------------------------------------------------------


def test_a_full_queue_gets_429_with_retry_after_and_the_accepted_requests_complete():
    engine = HeldEngine()
    app = create_app(
        engine,
        api_key=None,
        limits=ServerLimits(max_queue=1, max_concurrency=1),
        served_name="held",
        batch_window_s=0,
    )
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as c,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        try:
            running = pool.submit(c.post, "/v1/chat/completions", json=body)
            assert engine.entered.wait(timeout=10), "the first request never reached the engine"
            waiting = pool.submit(c.post, "/v1/chat/completions", json=body)
            wait_until(lambda: app.state.batcher.waiting == 1)
            refused = c.post("/v1/chat/completions", json=body, timeout=5)
            error = assert_error(refused, 429, type="rate_limit_error")
            assert error["code"] == "server_busy"
            assert int(refused.headers["retry-after"]) >= 1
            # The event loop stays responsive while the engine is busy.
            assert c.get("/health", timeout=5).status_code == 200
            assert not running.done() and not waiting.done()
        finally:
            engine.release.set()
        accepted = [running.result(timeout=TIMEOUT), waiting.result(timeout=TIMEOUT)]
    for response in accepted:
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "ok"


# --- work caps (issue 20) -----------------------------------------------------------------------------------------


def test_a_request_over_the_work_cap_gets_400_naming_the_cap(client):
    # 20 prompts x 20 samples x 32 tokens = 12,800 tokens: each factor allowed alone, the product is not.
    body = {"model": SERVED, "prompt": [f"Question {i}?" for i in range(20)], "n": 20, "max_tokens": 32}

    error = assert_error(client.post("/v1/completions", json=body), 400, param="max_tokens")

    assert "12,800" in error["message"] and "8,192" in error["message"]


def test_a_burst_from_one_key_over_its_limit_gets_429_while_another_key_is_served():
    engine = HeldEngine()
    app = create_app(
        engine,
        api_key=None,
        limits=ServerLimits(max_per_key=2, max_concurrency=1, max_queue=16),
        served_name="held",
        batch_window_s=0,
    )
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as c,
        ThreadPoolExecutor(max_workers=3) as pool,
    ):
        try:
            first = pool.submit(c.post, "/v1/chat/completions", json=body, headers=alice)
            assert engine.entered.wait(timeout=10), "the first request never reached the engine"
            second = pool.submit(c.post, "/v1/chat/completions", json=body, headers=alice)
            wait_until(lambda: app.state.batcher.waiting == 1)
            refused = c.post("/v1/chat/completions", json=body, headers=alice, timeout=5)
            error = assert_error(refused, 429, type="rate_limit_error")
            assert error["code"] == "too_many_concurrent_requests" and "2 at most" in error["message"]
            assert int(refused.headers["retry-after"]) >= 1
            other = pool.submit(c.post, "/v1/chat/completions", json=body, headers=bob)
            wait_until(lambda: app.state.batcher.waiting == 2)  # bob's request is queued, not refused
            assert c.get("/health", timeout=5).status_code == 200
        finally:
            engine.release.set()
        served = [f.result(timeout=TIMEOUT) for f in (first, second, other)]
    assert [r.status_code for r in served] == [200, 200, 200]
    assert slots_were_given_back(app)


def slots_were_given_back(app: Any) -> bool:
    """After the burst, a new request from the refused key is accepted again (its slots were given back)."""
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        return c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer alice"}).status_code == 200
