"""Specification of the llamacpp engine: the same protocol as the hf engine, on the same tokens, so it answers as
the hf engine does up to f16 rounding. The model is a tiny random LLaMA exported to GGUF in the test.

Everything but the first test needs llama-cpp-python (``pip install 'aloekit[llamacpp]'``) and skips without it.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aloekit.engines import GenerationRequest, LoglikelihoodRequest
from aloekit.errors import UserError
from support import MEDICAL_PROMPTS, WORDS, aloe, assert_one_line_error, random_pairs, without_module

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def test_without_llama_cpp_python_the_backend_says_how_to_install_it(tiny_llama: Path, tmp_path: Path) -> None:
    env = without_module("llama_cpp", tmp_path)
    result = aloe("generate", "--backend", "llamacpp", "--model", str(tiny_llama), "Hello", env=env)
    assert_one_line_error(result, "llama-cpp-python", "pip install 'aloekit[llamacpp]'")


needs_llama_cpp = pytest.mark.skipif(not HAS_LLAMA_CPP, reason="needs llama-cpp-python (aloekit[llamacpp])")


@pytest.fixture(scope="module")
def engines(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object]]:
    """(hf engine, llamacpp engine) on the same tiny model; the GGUF is exported into a private cache."""
    from aloekit.engines.hf import HFEngine
    from aloekit.engines.llamacpp import LlamaCppEngine

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALOE_HOME", str(tmp_path_factory.mktemp("aloe-home")))
        hf = HFEngine.from_reference(str(tiny_llama), device="cpu", batch_size=4)
        cpp = LlamaCppEngine.from_reference(str(tiny_llama), threads=1)
        yield hf, cpp
        cpp.close()


def _questions(n: int, seed: int) -> list[list[LoglikelihoodRequest]]:
    """n multiple-choice questions: a shared few-shot prefix, a question, four lettered options scored by letter."""
    rng = random.Random(seed)
    shots = " ".join(rng.choices(WORDS, k=30))
    questions = []
    for _ in range(n):
        context = f"{shots}\nQuestion: {' '.join(rng.choices(WORDS, k=rng.randint(5, 20)))}\nAnswer:"
        questions.append([LoglikelihoodRequest(context, f" {letter}") for letter in "ABCD"])
    return questions


@needs_llama_cpp
def test_loglikelihood_matches_hf_up_to_f16_rounding(engines: tuple) -> None:
    hf, cpp = engines
    requests = random_pairs(48, seed=3)

    ours, theirs = cpp.loglikelihood(requests), hf.loglikelihood(requests)

    assert [r.n_tokens for r in ours] == [r.n_tokens for r in theirs]  # the same tokens
    difference = np.abs(np.array([r.logprob for r in ours]) - np.array([r.logprob for r in theirs]))
    assert difference.max() < 0.05, difference.max()


@needs_llama_cpp
def test_mcqa_predictions_agree_with_hf(engines: tuple) -> None:
    hf, cpp = engines
    questions = _questions(30, seed=5)
    flat = [r for q in questions for r in q]

    ours = np.array([r.logprob for r in cpp.loglikelihood(flat)]).reshape(len(questions), 4)
    theirs = np.array([r.logprob for r in hf.loglikelihood(flat)]).reshape(len(questions), 4)

    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.95
    assert np.abs(ours - theirs).max() < 0.05


@needs_llama_cpp
def test_reusing_the_cache_across_contexts_and_continuations_changes_no_score(engines: tuple) -> None:
    _, cpp = engines
    requests = random_pairs(12, seed=9, shared=3)

    together = [r.logprob for r in cpp.loglikelihood(requests)]
    alone = [cpp.loglikelihood([r])[0].logprob for r in requests]

    np.testing.assert_allclose(together, alone, atol=1e-3)


@needs_llama_cpp
def test_top1_next_token_agrees_with_hf(engines: tuple) -> None:
    hf, cpp = engines
    rng = random.Random(11)
    prompts = [*MEDICAL_PROMPTS, *(" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(32))]
    requests = [GenerationRequest(prompt=p, max_tokens=1) for p in prompts]

    ours = [g.text for g in cpp.generate(requests)]
    theirs = [g.text for g in hf.generate(requests)]

    assert np.mean([a == b for a, b in zip(ours, theirs, strict=True)]) >= 0.95


@needs_llama_cpp
def test_generation_follows_the_request(engines: tuple) -> None:
    hf, cpp = engines
    chat = GenerationRequest(messages=({"role": "user", "content": MEDICAL_PROMPTS[0]},), max_tokens=6)
    (greedy,) = cpp.generate([chat])
    assert greedy.completion_tokens[0] <= 6 and greedy.prompt_tokens == len(hf.prompt_ids(chat))
    assert greedy.text == hf.generate([chat])[0].text or greedy.finish_reasons == ["length"]

    sampled = GenerationRequest(prompt=MEDICAL_PROMPTS[1], max_tokens=8, temperature=1.0, n=3, seed=4)
    first, again = cpp.generate([sampled])[0], cpp.generate([sampled])[0]
    assert len(first.texts) == 3 and first.texts == again.texts  # seeded: the same samples every time
    other = cpp.generate([GenerationRequest(prompt=MEDICAL_PROMPTS[1], max_tokens=8, temperature=1.0, n=3, seed=5)])
    assert other[0].texts != first.texts

    long = GenerationRequest(prompt=MEDICAL_PROMPTS[2], max_tokens=12)
    text = cpp.generate([long])[0].text
    if len(text) > 4:  # stop at a string the unstopped reply contains: the reply ends just before it
        stop = text[2:4]
        stopped = cpp.generate([GenerationRequest(prompt=MEDICAL_PROMPTS[2], max_tokens=12, stop=(stop,))])[0]
        assert stopped.text == text[: text.find(stop)] and stopped.finish_reasons == ["stop"]


@needs_llama_cpp
def test_prompt_logprobs_match_hf(engines: tuple) -> None:
    hf, cpp = engines
    ours, theirs = (
        cpp.prompt_logprobs([MEDICAL_PROMPTS[3]], top=2)[0],
        hf.prompt_logprobs([MEDICAL_PROMPTS[3]], top=2)[0],
    )
    assert ours.tokens == theirs.tokens and ours.text_offset == theirs.text_offset
    assert ours.token_logprobs[0] is None
    np.testing.assert_allclose(ours.token_logprobs[1:], theirs.token_logprobs[1:], atol=0.05)


@needs_llama_cpp
def test_threads_default_to_the_machine_and_can_be_set(tiny_llama: Path, engines: tuple, aloe_home: Path) -> None:
    from aloekit.engines.llamacpp import LlamaCppEngine, machine_threads

    _, cpp = engines
    assert cpp.llm.n_threads == 1  # the fixture asked for one
    default = LlamaCppEngine.from_reference(str(tiny_llama))
    try:
        assert default.llm.n_threads == machine_threads()
    finally:
        default.close()


def test_next_token_is_the_argmax_when_greedy_and_a_seeded_draw_from_the_nucleus_otherwise() -> None:
    from aloekit.engines.llamacpp import next_token

    logits = np.log(np.array([0.1, 0.5, 0.3, 0.1], dtype=np.float32))
    assert next_token(logits, GenerationRequest(prompt="x"), np.random.default_rng(0)) == 1

    nucleus = GenerationRequest(prompt="x", temperature=1.0, top_p=0.7)  # 0.5 + 0.3 reach 0.7: tokens 1 and 2
    draws = [next_token(logits, nucleus, np.random.default_rng(seed)) for seed in range(200)]
    assert set(draws) == {1, 2}
    assert 0.5 < draws.count(1) / len(draws) < 0.75  # 0.5 / 0.8 of the draws, renormalised
    again = [next_token(logits, nucleus, np.random.default_rng(seed)) for seed in range(200)]
    assert draws == again

    everything = GenerationRequest(prompt="x", temperature=1.0)
    assert set(next_token(logits, everything, np.random.default_rng(seed)) for seed in range(400)) == {0, 1, 2, 3}


@needs_llama_cpp
def test_many_sequences_at_once_give_the_texts_of_one_at_a_time(tiny_llama: Path, engines: tuple) -> None:
    from aloekit.engines.llamacpp import LlamaCppEngine

    _, cpp = engines  # 16 sequences at once
    rng = random.Random(13)
    requests = [
        GenerationRequest(
            prompt=" ".join(rng.choices(WORDS, k=rng.randint(2, 40))),
            max_tokens=rng.choice([0, 1, 5, 12, 20]),
            stop=(rng.choice(WORDS),) if i % 3 == 0 else (),
        )
        for i in range(40)  # more requests than sequences: finished slots are taken by waiting prompts
    ]
    requests.append(GenerationRequest(prompt=MEDICAL_PROMPTS[0], max_tokens=10, temperature=0.8, n=3, seed=7))
    one = LlamaCppEngine.from_reference(str(tiny_llama), threads=1, batch_size=1)
    try:
        alone = one.generate(requests)
    finally:
        one.close()

    together = cpp.generate(requests)

    assert [g.texts for g in together] == [g.texts for g in alone]
    assert [g.finish_reasons for g in together] == [g.finish_reasons for g in alone]
    assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
    assert all(
        len(g.texts) == r.n and max(g.completion_tokens) <= r.max_tokens
        for g, r in zip(together, requests, strict=True)
    )
    assert len(set(together[-1].texts)) > 1  # three samples, each its own random stream


@needs_llama_cpp
def test_dtype_bfloat16_runs_a_bf16_export_and_float32_is_refused(tiny_llama: Path, engines: tuple) -> None:
    from aloekit.engines.llamacpp import LlamaCppEngine

    hf, _ = engines
    bf16 = LlamaCppEngine.from_reference(str(tiny_llama), threads=1, dtype="bfloat16")
    try:
        assert Path(bf16.llm.model_path).parent.name.endswith("-bf16")
        ours = bf16.loglikelihood(random_pairs(16, seed=21))
    finally:
        bf16.close()
    theirs = hf.loglikelihood(random_pairs(16, seed=21))
    assert np.abs(np.array([r.logprob for r in ours]) - np.array([r.logprob for r in theirs])).max() < 0.1

    with pytest.raises(UserError, match="not dtype float32: choose auto, float16 or bfloat16"):
        LlamaCppEngine.from_reference(str(tiny_llama), dtype="float32")


@needs_llama_cpp
def test_a_gguf_runs_as_it_is_unless_a_weight_type_is_asked_for(
    tiny_llama: Path, engines: tuple, tmp_path: Path
) -> None:
    from aloekit.engines.llamacpp import LlamaCppEngine
    from aloekit.export.gguf import export_gguf

    gguf_file = export_gguf(str(tiny_llama), tmp_path / "tiny.gguf", quant="q8_0").path
    as_is = LlamaCppEngine.from_reference(str(gguf_file), threads=1)
    try:
        assert Path(as_is.llm.model_path) == gguf_file
    finally:
        as_is.close()
    # A recipe compares its base (an alias, a .gguf) with fine-tuned folders exported to bf16: same kernels.
    typed = LlamaCppEngine.from_reference(str(gguf_file), threads=1, dtype="bfloat16")
    try:
        assert Path(typed.llm.model_path).parent.name.endswith("-bf16")
    finally:
        typed.close()


@needs_llama_cpp
def test_long_requests_run_fewer_sequences_at_once_within_the_cache_budget(
    engines: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.engines import llamacpp

    _, cpp = engines
    requests = [GenerationRequest(prompt=p, max_tokens=8) for p in MEDICAL_PROMPTS]
    expected = [g.text for g in cpp.generate(requests)]
    monkeypatch.setattr(llamacpp, "_GENERATION_TOKENS", 512)  # two sequences of 256 tokens

    assert [g.text for g in cpp.generate(requests)] == expected
    assert cpp._gen_parallel == 2 < cpp.parallel


@needs_llama_cpp
def test_models_load_without_extra_buffer_types_and_the_library_defaults_are_restored() -> None:
    # With extra buffer types, llama.cpp's AMX kernels segfaulted in llama_decode on a Xeon with AMX (the
    # embedded Q4_1 model, a safety suite's first batch): the engine loads every model without them.
    import llama_cpp.llama_cpp as low

    from aloekit.engines.llamacpp import _model_params, import_llama_cpp

    before = low.llama_model_default_params
    with _model_params(import_llama_cpp(), extra_buffers=False):
        assert low.llama_model_default_params().use_extra_bufts is False
    assert low.llama_model_default_params is before
    assert low.llama_model_default_params().use_extra_bufts is True  # the library's own default, untouched
