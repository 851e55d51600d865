"""Specification of the openai backend: against `aloe serve` over real HTTP it agrees with the hf engine it wraps;
against a scripted transport it retries what is transient, bounds its concurrency and fails clearly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aloekit.engines import GenerationRequest, LoglikelihoodRequest, PromptLogprobs, load_engine
from aloekit.engines.hf import HFEngine
from aloekit.engines.openai import OpenAIEngine, _continuation_score
from aloekit.errors import UserError
from aloekit.serve import ServerLimits, create_app, serve_in_thread
from support import MEDICAL_PROMPTS, random_pairs

KEY = "test-key-123"


@pytest.fixture(scope="module")
def hf_engine(tiny_llama: Path) -> HFEngine:
    return HFEngine.from_reference(str(tiny_llama), batch_size=8)


@pytest.fixture(scope="module")
def server(hf_engine: HFEngine) -> Iterator[str]:
    limits = ServerLimits(max_request_bytes=20_000, max_tokens=64)
    with serve_in_thread(create_app(hf_engine, api_key=KEY, limits=limits, served_name="tiny")) as url:
        yield url + "/v1"


@pytest.fixture
def client(server: str) -> OpenAIEngine:
    return OpenAIEngine(base_url=server, api_key=KEY, max_retries=0)


def chat(prompt: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": prompt},), **kw)  # type: ignore[arg-type]


def test_the_served_model_name_is_discovered_when_none_is_given(client):
    assert client.model_id == "tiny"


def test_greedy_text_over_http_equals_the_hf_engine_directly(client, hf_engine):
    requests = [chat(p, max_tokens=16) for p in MEDICAL_PROMPTS[:4]]
    requests += [GenerationRequest(prompt=p, max_tokens=16) for p in MEDICAL_PROMPTS[4:]]
    remote = client.generate(requests)
    local = hf_engine.generate(requests)
    assert [r.texts for r in remote] == [g.texts for g in local]
    assert [r.prompt_tokens for r in remote] == [g.prompt_tokens for g in local]
    assert [r.completion_tokens for r in remote] == [g.completion_tokens for g in local]


def test_loglikelihoods_over_http_equal_the_hf_engine_within_1e_4(client, hf_engine):
    requests = random_pairs(20, seed=5)
    remote = client.loglikelihood(requests)
    local = hf_engine.loglikelihood(requests)
    for r, g in zip(remote, local, strict=True):
        assert r.logprob == pytest.approx(g.logprob, abs=1e-4)
        assert r.n_tokens == g.n_tokens
        assert r.is_greedy == g.is_greedy


def test_sampling_through_the_server_is_reproducible_with_a_seed(client):
    request = GenerationRequest(prompt="The patient", max_tokens=8, temperature=1.0, n=3, seed=7)
    first = client.generate([request])[0]
    assert client.generate([request])[0].texts == first.texts
    assert len(first.texts) == 3 and sum(first.completion_tokens) <= 24


def test_a_wrong_api_key_is_a_user_error_that_says_401_and_how_to_fix_it(server):
    with pytest.raises(UserError, match=r"HTTP 401.*--api-key"):
        OpenAIEngine("tiny", base_url=server, api_key="wrong").generate([chat("hi", max_tokens=2)])


def test_an_oversized_request_is_refused_by_the_server(client):
    with pytest.raises(UserError, match="HTTP 413"):
        client.generate([GenerationRequest(prompt="x" * 30_000, max_tokens=1)])
    with pytest.raises(UserError, match=r"HTTP 400.*max_tokens"):
        client.generate([chat("hi", max_tokens=65)])


def test_an_empty_context_cannot_be_scored_over_http(client):
    with pytest.raises(UserError, match="empty context"):
        client.loglikelihood([LoglikelihoodRequest("", "Fever")])


def test_the_engine_works_when_called_from_inside_a_running_event_loop(client, hf_engine):
    async def inside() -> list[str]:
        return client.generate([chat("hello", max_tokens=4)])[0].texts

    assert asyncio.run(inside()) == hf_engine.generate([chat("hello", max_tokens=4)])[0].texts


def test_load_engine_builds_the_openai_backend_and_needs_a_base_url(server, monkeypatch):
    engine = load_engine("openai", None, base_url=server, api_key=KEY)
    assert engine.name == "openai" and engine.model_id == "tiny"
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="--base-url"):
        load_engine("openai", "tiny")


# --- scripted servers: retries, concurrency, servers without echo ------------------------------------------------


def completion(text: str = "ok", **extra: object) -> dict[str, object]:
    return {
        "choices": [{"index": 0, "text": text, "finish_reason": "length", **extra}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }


def test_transient_failures_are_retried_with_backoff_and_then_succeed():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": {"message": "warming up"}})
        return httpx.Response(200, json=completion("fine"))

    engine = OpenAIEngine("m", base_url="http://test/v1", transport=httpx.MockTransport(handler), backoff_s=0.001)
    assert engine.generate([GenerationRequest(prompt="p", max_tokens=1)])[0].texts == ["fine"]
    assert len(calls) == 3


def test_client_errors_are_not_retried_and_carry_the_servers_message():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "invalid field 'top_p'"}})

    engine = OpenAIEngine("m", base_url="http://test/v1", transport=httpx.MockTransport(handler), backoff_s=0.001)
    with pytest.raises(UserError, match="invalid field 'top_p'"):
        engine.generate([GenerationRequest(prompt="p", max_tokens=1)])
    assert len(calls) == 1


def test_an_unreachable_server_fails_after_the_retries_with_one_clear_line():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    engine = OpenAIEngine(
        "m", base_url="http://test/v1", transport=httpx.MockTransport(handler), max_retries=2, backoff_s=0.001
    )
    with pytest.raises(UserError, match="cannot reach http://test/v1/completions after 3 attempts"):
        engine.generate([GenerationRequest(prompt="p", max_tokens=1)])


def test_no_more_than_max_concurrency_requests_are_in_flight_at_once():
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json=completion(json.loads(request.content)["prompt"]))

    engine = OpenAIEngine("m", base_url="http://test/v1", transport=httpx.MockTransport(handler), max_concurrency=3)
    prompts = [f"p{i}" for i in range(10)]
    results = engine.generate([GenerationRequest(prompt=p, max_tokens=1) for p in prompts])
    assert [r.text for r in results] == prompts  # in request order
    assert peak == 3


def test_a_server_without_prompt_logprobs_gets_a_clear_error_not_a_made_up_score():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion("context continuation", logprobs=None))

    engine = OpenAIEngine("m", base_url="http://test/v1", transport=httpx.MockTransport(handler))
    with pytest.raises(UserError, match="does not return prompt log-probabilities"):
        engine.loglikelihood([LoglikelihoodRequest("context", " continuation")])


def test_a_token_that_straddles_the_context_boundary_is_refused():
    scored = PromptLogprobs(
        tokens=["Ans", "wer:B"], text_offset=[0, 3], token_logprobs=[None, -1.0], top_logprobs=[None, {"wer:B": -1.0}]
    )
    with pytest.raises(UserError, match="merges the end of the context"):
        _continuation_score(0, len("Answer:"), scored)
    clean = PromptLogprobs(
        tokens=["Answer", ":", " B"],
        text_offset=[0, 6, 7],
        token_logprobs=[None, -0.5, -2.0],
        top_logprobs=[None, {":": -0.5}, {" A": -1.0}],
    )
    result = _continuation_score(0, len("Answer:"), clean)
    assert (result.logprob, result.n_tokens, result.is_greedy) == (-2.0, 1, False)


@pytest.mark.slow
def test_the_embedded_model_served_over_http_answers_exactly_as_it_does_directly(smollm2_path):
    engine = HFEngine.from_reference(str(smollm2_path), batch_size=8)
    requests = [chat(p, max_tokens=32) for p in MEDICAL_PROMPTS[:4]]
    with serve_in_thread(create_app(engine, api_key=None, limits=ServerLimits(), served_name="smol")) as url:
        remote = OpenAIEngine(base_url=url + "/v1").generate(requests)
    local = engine.generate(requests)
    assert [r.text for r in remote] == [g.text for g in local]
