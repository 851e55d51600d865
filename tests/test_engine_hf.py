"""Specification of the transformers (hf) engine: exact scores, batching that changes nothing, one context pass."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aloekit.engines import GenerationRequest, LoglikelihoodRequest, load_engine
from aloekit.engines.hf import HFEngine
from aloekit.errors import UserError
from support import MEDICAL_PROMPTS, WORDS, random_pairs

FAMILIES = ("llama", "mistral", "qwen2", "gemma")


def direct_loglikelihood(model_dir: Path, requests: list[LoglikelihoodRequest]) -> list[tuple[float, bool]]:
    """The plain transformers computation, one unpadded sequence at a time: the yardstick."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    bos = [tok.bos_token_id] if model.config.model_type.startswith("gemma") else []
    out = []
    for r in requests:
        ctx = bos + tok(r.context, add_special_tokens=False)["input_ids"]
        whole = bos + tok(r.context + r.continuation, add_special_tokens=False)["input_ids"]
        cont = whole[len(ctx) :]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
        steps = logp[len(ctx) - 1 : -1]
        target = torch.tensor(cont)
        out.append((float(steps.gather(-1, target[:, None]).sum()), bool((steps.argmax(-1) == target).all())))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_loglikelihoods_equal_direct_transformers_within_1e_4_at_batch_1_and_8(tiny_models, family):
    requests = random_pairs(20, seed=7)
    expected = direct_loglikelihood(tiny_models[family], requests)
    assert all(len(r.continuation.split()) >= 2 for r in requests)
    for batch_size in (1, 8):
        engine = HFEngine.from_reference(str(tiny_models[family]), batch_size=batch_size)
        got = engine.loglikelihood(requests)
        assert [g.n_tokens >= 2 for g in got] == [True] * 20
        for g, (logprob, greedy) in zip(got, expected, strict=True):
            assert g.logprob == pytest.approx(logprob, abs=1e-4)
            assert g.is_greedy == greedy


@pytest.mark.slow
def test_loglikelihoods_of_the_embedded_model_equal_direct_transformers(smollm2_path):
    requests = random_pairs(20, seed=11)
    expected = direct_loglikelihood(smollm2_path, requests)
    for batch_size in (1, 8):
        got = HFEngine.from_reference(str(smollm2_path), batch_size=batch_size).loglikelihood(requests)
        assert max(abs(g.logprob - e[0]) for g, e in zip(got, expected, strict=True)) < 1e-4
        assert [g.is_greedy for g in got] == [e[1] for e in expected]


def count_forwards(engine: HFEngine) -> list[int]:
    calls: list[int] = []
    engine.model.register_forward_hook(lambda module, args, kwargs, out: calls.append(1), with_kwargs=True)
    return calls


def test_continuations_sharing_a_context_cost_one_context_pass_plus_one_continuation_pass(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama), batch_size=8)
    calls = count_forwards(engine)
    context = "A 54-year-old man has crushing chest pain. The most likely diagnosis is"
    options = [" acute myocardial infarction", " pulmonary embolism", " aortic dissection", " panic attack"]
    engine.loglikelihood([LoglikelihoodRequest(context, o) for o in options])
    assert len(calls) == 2


def test_single_token_continuations_cost_one_forward_per_batch_of_questions(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama), batch_size=8)
    calls = count_forwards(engine)
    requests = [
        LoglikelihoodRequest(f"Question {q}: which option is right?\nAnswer:", f" {letter}")
        for q in range(3)
        for letter in "ABCD"
    ]
    assert all(len(engine.encode_pair(r.context, r.continuation)[1]) == 1 for r in requests)
    results = engine.loglikelihood(requests)
    assert len(calls) == 1
    expected = direct_loglikelihood(tiny_llama, requests)
    assert [r.logprob for r in results] == pytest.approx([e[0] for e in expected], abs=1e-4)


def test_results_come_back_in_request_order_whatever_the_internal_sorting(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama), batch_size=3)
    requests = random_pairs(12, seed=3, shared=1)
    together = engine.loglikelihood(requests)
    alone = [engine.loglikelihood([r])[0] for r in requests]
    assert [t.logprob for t in together] == pytest.approx([a.logprob for a in alone], abs=1e-4)


def test_an_empty_context_is_scored_after_bos_as_lm_eval_does(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    ctx, cont = engine.encode_pair("", "Fever is common.")
    assert ctx == [engine.tokenizer.bos_token_id]
    assert engine.tokenizer.decode(cont) == "Fever is common."
    (result,) = engine.loglikelihood([LoglikelihoodRequest("", "Fever is common.")])
    assert result.n_tokens == len(cont) and result.logprob < 0


def test_trailing_context_spaces_move_to_the_continuation(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    assert engine.encode_pair("Answer: ", "B") == engine.encode_pair("Answer:", " B")


@pytest.mark.slow
def test_greedy_generations_agree_between_batch_1_and_batch_8(smollm2_path):
    requests = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=32) for p in MEDICAL_PROMPTS]
    one = HFEngine.from_reference(str(smollm2_path), batch_size=1).generate(requests)
    eight = HFEngine.from_reference(str(smollm2_path), batch_size=8).generate(requests)
    identical = [a.text == b.text for a, b in zip(one, eight, strict=True)]
    # Left padding changes float summation order; an argmax near-tie may flip once. 7 of 8 is the contract.
    assert sum(identical) >= 7, [(a.text, b.text) for a, b in zip(one, eight, strict=True)]
    assert all(g.completion_tokens[0] <= 32 for g in one + eight)


def test_sampling_is_deterministic_given_a_seed_and_varies_with_it(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama), batch_size=4)

    def sample(seed: int) -> list[list[str]]:
        reqs = [GenerationRequest(prompt=p, max_tokens=8, temperature=1.0, n=2, seed=seed) for p in MEDICAL_PROMPTS[:3]]
        return [g.texts for g in engine.generate(reqs)]

    first = sample(1)
    assert sample(1) == first
    assert sample(2) != first
    assert all(len(texts) == 2 for texts in first)


def test_generation_stops_at_a_stop_string_and_does_not_return_it(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    (free,) = engine.generate([GenerationRequest(prompt="The patient", max_tokens=24)])
    assert free.finish_reasons == ["length"] and len(free.text) > 12
    stop = free.text[8:12]
    (stopped,) = engine.generate([GenerationRequest(prompt="The patient", max_tokens=24, stop=(stop,))])
    assert stopped.text == free.text[: free.text.find(stop)]
    assert stopped.finish_reasons == ["stop"]


def test_chat_requests_use_the_chat_template_and_max_tokens_zero_returns_nothing(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    request = GenerationRequest(messages=({"role": "user", "content": "hello"},), max_tokens=0)
    ids = engine.prompt_ids(request)
    assert "<|im_start|>assistant" in engine.tokenizer.decode(ids)
    (result,) = engine.generate([request])
    assert result.texts == [""] and result.completion_tokens == [0]


def test_chat_messages_on_a_model_without_chat_template_are_a_user_error(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    engine.tokenizer.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        engine.generate([GenerationRequest(messages=({"role": "user", "content": "hi"},))])


def test_a_prompt_longer_than_the_model_allows_is_refused_not_truncated(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    engine.max_length = 16
    with pytest.raises(UserError, match="exceed"):
        engine.generate([GenerationRequest(prompt="word " * 40, max_tokens=4)])
    with pytest.raises(UserError, match="more than the model"):
        engine.loglikelihood([LoglikelihoodRequest("word " * 40, " end")])


def test_prompt_logprobs_equal_the_loglikelihood_of_the_same_tokens(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama))
    context, continuation = "Aspirin inhibits", " cyclooxygenase enzymes"
    (echo,) = engine.prompt_logprobs([context + continuation], top=3)
    assert echo.token_logprobs[0] is None and "".join(echo.tokens) == context + continuation
    tail = [lp for lp, off in zip(echo.token_logprobs, echo.text_offset, strict=True) if off >= len(context)]
    (scored,) = engine.loglikelihood([LoglikelihoodRequest(context, continuation)])
    assert sum(tail) == pytest.approx(scored.logprob, abs=1e-4)
    assert all(len(t) == 3 for t in echo.top_logprobs[1:])


def test_asking_for_cuda_without_a_gpu_is_a_user_error(tiny_llama):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA GPU"):
        HFEngine.from_reference(str(tiny_llama), device="cuda")


def test_the_vllm_backend_without_vllm_installed_says_how_to_get_it(tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it now fails, as where it is not installed
    with pytest.raises(UserError, match="vllm"):
        load_engine("vllm", str(tiny_llama))


def test_an_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown backend"):
        load_engine("tgi", "x")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_prefix_shared_by_every_question_in_a_batch_is_run_once_and_changes_no_score(tiny_models, family):
    # Few-shot prompts: the same solved examples before every question. The engine runs them once per batch.
    shots = " ".join(random.Random(1).choices(WORDS, k=60)) + "\nAnswer: B\n\n"
    requests = [
        LoglikelihoodRequest(shots + f"Question {q}: {' '.join(random.Random(q).choices(WORDS, k=3 + q))}\nAnswer:", o)
        for q in range(4)
        for o in (" A", " B", " C", " none of these")
    ]
    engine = HFEngine.from_reference(str(tiny_models[family]), batch_size=4)
    calls = count_forwards(engine)
    got = engine.loglikelihood(requests)
    # The shared prefix, the four questions, the multi-token continuations (no prefix pass with sliding windows).
    assert len(calls) == (3 if engine.prefix_sharing else 2)
    expected = direct_loglikelihood(tiny_models[family], requests)
    for g, (logprob, greedy) in zip(got, expected, strict=True):
        assert g.logprob == pytest.approx(logprob, abs=1e-4)
        assert g.is_greedy == greedy


def test_a_prefix_shared_across_batches_runs_once_per_call_and_changes_no_score(tiny_llama):
    # Eight questions in batches of two: four batches, one prefix forward among them, then one forward per batch.
    shots = " ".join(random.Random(2).choices(WORDS, k=40)) + "\nAnswer: A\n\n"
    requests = [
        LoglikelihoodRequest(shots + f"Question {q}: {' '.join(random.Random(q).choices(WORDS, k=2 + q))}\nAnswer:", o)
        for q in range(8)
        for o in (" A", " B")
    ]
    engine = HFEngine.from_reference(str(tiny_llama), batch_size=2)
    calls = count_forwards(engine)
    got = engine.loglikelihood(requests)
    assert len(calls) == 1 + 4
    expected = direct_loglikelihood(tiny_llama, requests)
    for g, (logprob, greedy) in zip(got, expected, strict=True):
        assert g.logprob == pytest.approx(logprob, abs=1e-4)
        assert g.is_greedy == greedy
    # A second call starts afresh: its prefix is run again, not read from a call that has ended.
    calls.clear()
    engine.loglikelihood(requests[:4])
    assert len(calls) == 1 + 1


def test_models_with_sliding_window_layers_do_not_share_prefixes(tiny_models):
    assert HFEngine.from_reference(str(tiny_models["gemma"])).prefix_sharing is False
    assert HFEngine.from_reference(str(tiny_models["llama"])).prefix_sharing is True


def input_widths(engine: HFEngine) -> list[tuple[int, int]]:
    """(rows, tokens) of every forward's input ids."""
    shapes: list[tuple[int, int]] = []

    def hook(module, args, kwargs, out):  # type: ignore[no-untyped-def]
        ids = kwargs.get("input_ids", args[0] if args else None)
        shapes.append(tuple(ids.shape))

    engine.model.register_forward_hook(hook, with_kwargs=True)
    return shapes


@pytest.mark.parametrize("family", FAMILIES)
def test_an_ensembles_runs_share_their_prefix_once_and_generate_what_each_prompt_alone_would(tiny_models, family):
    # Medprompt asks each question several times with the options reordered, after the same few-shot examples.
    def prompt(q: int, run: int) -> str:
        shots = " ".join(random.Random(q).choices(WORDS, k=50))
        options = ["heart", "lung", "kidney", "liver"]
        options = options[run:] + options[:run]
        return f"{shots}\nQuestion {q}: which organ?\n" + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))

    requests = [GenerationRequest(prompt=prompt(q, run), max_tokens=6) for q in range(3) for run in range(4)]
    requests.append(GenerationRequest(prompt="A lone question about the spleen?", max_tokens=6))
    alone = HFEngine.from_reference(str(tiny_models[family]), batch_size=1).generate(requests)
    engine = HFEngine.from_reference(str(tiny_models[family]), batch_size=8)
    shapes = input_widths(engine)
    together = engine.generate(requests)
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
    if engine.prefix_sharing:
        # Per batch: one pass over the distinct prefixes, then generation starts on the short suffixes only.
        longest = max(len(engine.prompt_ids(r)) for r in requests)
        prefix_passes = [s for s in shapes if s[0] <= 3 and s[1] > 20]
        assert prefix_passes and all(rows in (1, 2, 3) for rows, _ in prefix_passes)
        first_steps = [s for s in shapes if s[0] > 3 and s[1] > 1]
        assert first_steps and all(width < longest // 2 for _, width in first_steps)


def test_a_bf16_model_scores_with_fp32_logits_so_close_options_do_not_tie(tiny_llama):
    engine = HFEngine.from_reference(str(tiny_llama), dtype="bfloat16", batch_size=4)
    assert next(engine.model.model.parameters()).dtype == torch.bfloat16  # the body keeps its speed
    assert engine.model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.float32
    requests = [LoglikelihoodRequest("Question: 2+2?\nAnswer:", f" {letter}") for letter in "ABCDEFGH"]
    scores = [r.logprob for r in engine.loglikelihood(requests)]
    # bf16 logits sit on a grid (0.125 apart near 16-32) where near-equal options tie; fp32 logits do not.
    assert len(set(scores)) == len(scores)
    reference = [r.logprob for r in HFEngine.from_reference(str(tiny_llama), batch_size=4).loglikelihood(requests)]
    assert max(abs(a - b) for a, b in zip(scores, reference, strict=True)) < 0.05
