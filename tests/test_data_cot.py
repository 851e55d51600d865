"""Specification: teacher chain-of-thought is kept only when it reaches the gold answer, and a killed run resumes
without asking the teacher again for anything it already finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from aloekit.data.cot import (
    CoTConfig,
    explanation_cot,
    generate_cot,
    load_verified,
    teacher_messages,
    verify,
)
from aloekit.data.schema import MCQItem
from aloekit.engines import Engine, Generation, GenerationRequest
from aloekit.errors import UserError
from support import ScriptedEngine

DRUGS = ("Aspirin", "Heparin", "Warfarin", "Metformin")


def mcq(i: int, answer: int = 1, **fields: object) -> MCQItem:
    return MCQItem(
        id=f"q{i}",
        question=f"Which drug is first line for condition number {i}?",
        options=DRUGS,
        answer=answer,
        source="unit",
        **fields,  # type: ignore[arg-type]
    )


def reasoning(letter: str) -> str:
    """A teacher reply that discusses the options and concludes ``letter``."""
    return (
        "The question asks which drug is first line for this condition. Aspirin is an antiplatelet and not "
        "enough on its own; heparin acts at once; warfarin takes days; metformin is for diabetes.\n"
        f"Answer: {letter}"
    )


def item_of(request: GenerationRequest, items: Sequence[MCQItem]) -> MCQItem:
    assert request.messages is not None
    user = request.messages[-1]["content"]
    (found,) = [item for item in items if f"Question: {item.question}\n" in user]
    return found


def always_right(items: Sequence[MCQItem]) -> Callable[[GenerationRequest], str]:
    return lambda request: reasoning(item_of(request, items).answer_letter)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- prompt and verification ----------------------------------------------------------------------------------


def test_the_teacher_is_told_the_answer_and_asked_to_reason_to_it() -> None:
    item = mcq(1, answer=2, context="A 60-year-old with atrial fibrillation.")
    system, user = teacher_messages(item)
    assert system["role"] == "system" and user["role"] == "user"
    content = user["content"]
    assert "A 60-year-old with atrial fibrillation." in content
    assert item.question in content
    assert all(f"{letter}. {text}" in content for letter, text in zip("ABCD", DRUGS, strict=True))
    assert "The correct answer is C (Warfarin)" in content
    assert "each option" in content and "'Answer: C'" in content


def test_verify_keeps_reasoning_that_reaches_the_gold_answer_and_ends_it_with_one_answer_line() -> None:
    item = mcq(1, answer=1)
    reply = reasoning("B").replace("Answer: B", "So the correct answer is B.\n**Final answer: (B)**\n")
    kept = verify(reply, item)
    assert kept is not None
    assert kept.endswith("metformin is for diabetes.\nSo the correct answer is B.\n\nAnswer: B")
    assert kept.count("Answer: B") == 1


def test_verify_rejects_a_wrong_or_unreadable_conclusion_and_a_bare_letter() -> None:
    item = mcq(1, answer=1)
    assert verify(reasoning("C"), item) is None
    assert verify(reasoning("B").replace("Answer: B", "It could be either."), item) is None
    assert verify("Answer: B", item) is None  # the gold letter copied, no reasoning


def test_verify_rejects_a_reply_that_parrots_the_teacher_instructions() -> None:
    parrot = reasoning("B").replace("Answer: B", "3. Conclude with a final line that reads exactly 'Answer: B'.")
    assert verify(parrot, mcq(1, answer=1)) is None


# --- generation -----------------------------------------------------------------------------------------------


def test_blind_generation_asks_as_evaluation_does_and_keeps_only_answers_that_were_right(tmp_path: Path) -> None:
    from aloekit.evaluation.prompts import chat_messages

    items = [mcq(0, answer=1), mcq(1, answer=2)]
    model = ScriptedEngine(lambda request: reasoning("B"))  # right for q0 only
    generate_cot(model, items, tmp_path / "cot.jsonl", CoTConfig(blind=True, retries=0))
    assert [list(r.messages or ()) for r in model.requests] == [chat_messages(item, cot=True) for item in items]
    assert all("The correct answer is" not in m["content"] for r in model.requests for m in r.messages or ())
    rows = {row["id"]: row["status"] for row in read_lines(tmp_path / "cot.jsonl")}
    assert rows == {"q0": "accepted", "q1": "rejected"}


def test_only_verified_items_are_kept_and_retries_sample_with_new_seeds(tmp_path: Path) -> None:
    items = [mcq(0), mcq(1), mcq(2)]
    tries: dict[str, int] = {}

    def script(request: GenerationRequest) -> str:
        item = item_of(request, items)
        tries[item.id] = tries.get(item.id, 0) + 1
        if item.id == "q0" or (item.id == "q1" and tries["q1"] == 2):
            return reasoning("B")
        return reasoning("D")  # q1's first attempt and every attempt of q2 conclude the wrong option

    teacher = ScriptedEngine(script)
    out = tmp_path / "cot.jsonl"
    stats = generate_cot(teacher, items, out, CoTConfig(retries=2, seed=5, chunk=8))

    rows = {row["id"]: row for row in read_lines(out)}
    assert [rows[i]["status"] for i in ("q0", "q1", "q2")] == ["accepted", "accepted", "rejected"]
    assert [rows[i]["attempts"] for i in ("q0", "q1", "q2")] == [1, 2, 3]
    assert rows["q2"]["reasoning"] is None and rows["q2"]["reason"] == "wrong answer"
    assert rows["q1"]["teacher"] == "scripted-model" and rows["q1"]["item"] == items[1].to_json()
    # One engine call per round, each with every pending attempt; retries sample (temperature > 0), new seeds.
    assert [len(call) for call in teacher.calls] == [3, 2, 1]
    assert [(r.temperature, r.seed) for r in teacher.calls[0]] == [(0.0, 5)] * 3
    assert {(r.temperature, r.seed) for r in teacher.calls[1]} == {(0.7, 6)}
    assert {(r.temperature, r.seed) for r in teacher.calls[2]} == {(0.7, 7)}

    assert (stats.accepted, stats.rejected, stats.attempts, stats.completion_tokens) == (2, 1, 6, 42)
    assert stats.acceptance_rate == pytest.approx(2 / 3)
    saved = json.loads((tmp_path / "cot.jsonl.stats.json").read_text())
    assert saved["this_run"]["acceptance_rate"] == pytest.approx(0.6667)
    assert saved["cumulative"] == {
        "items": 3,
        "accepted": 2,
        "rejected": 1,
        "attempts": 6,
        "completion_tokens": 42,
        "acceptance_rate": pytest.approx(0.6667),
    }

    verified = load_verified(out)
    assert [item.id for item in verified] == ["q0", "q1"]
    assert all(item.explanation and item.explanation.endswith("\n\nAnswer: B") for item in verified)
    assert all(item.source == "unit" for item in verified)


def test_a_reply_cut_off_at_max_tokens_is_rejected_even_if_it_names_the_answer(tmp_path: Path) -> None:
    items = [mcq(0)]
    teacher = ScriptedEngine(always_right(items), finish="length")
    stats = generate_cot(teacher, items, tmp_path / "cot.jsonl", CoTConfig(retries=0))
    assert stats.accepted == 0
    assert read_lines(tmp_path / "cot.jsonl")[0]["reason"] == "cut off at max_tokens"


def test_after_a_kill_a_rerun_regenerates_nothing_already_finished(tmp_path: Path) -> None:
    items = [mcq(i) for i in range(10)]
    out = tmp_path / "cot.jsonl"
    config = CoTConfig(retries=0, chunk=3)
    with pytest.raises(KeyboardInterrupt):
        generate_cot(ScriptedEngine(always_right(items), die_after=2), items, out, config)
    finished = [row["id"] for row in read_lines(out)]
    assert finished == ["q0", "q1", "q2", "q3", "q4", "q5"]  # two whole chunks made it to disk
    with out.open("a") as f:
        f.write('{"id": "q6", "status": "acc')  # the kill tore the line being written

    teacher = ScriptedEngine(always_right(items))
    stats = generate_cot(teacher, items, out, config)

    assert sorted(item_of(r, items).id for r in teacher.requests) == ["q6", "q7", "q8", "q9"]
    assert [row["id"] for row in read_lines(out)] == [f"q{i}" for i in range(10)]
    assert (stats.items, stats.skipped, stats.attempted) == (10, 6, 4)
    assert json.loads((tmp_path / "cot.jsonl.stats.json").read_text())["cumulative"]["items"] == 10


def test_a_damaged_line_before_the_last_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    items = [mcq(0), mcq(1)]
    out = tmp_path / "cot.jsonl"
    out.write_text('{"id": "q0", "sta\n{"id": "q1", "status": "accepted"}\n')
    with pytest.raises(UserError, match="line 1"):
        generate_cot(ScriptedEngine(always_right(items)), items, out, CoTConfig())


def test_duplicate_item_ids_are_refused_since_resuming_keys_on_them(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'q0'"):
        generate_cot(ScriptedEngine(str), [mcq(0), mcq(0)], tmp_path / "cot.jsonl", CoTConfig())


_KILLED_RUN = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from aloekit.data.cot import CoTConfig, generate_cot
    from aloekit.data.schema import MCQItem
    from aloekit.engines import load_engine

    model, items_file, out = sys.argv[1:]
    items = [MCQItem.from_json(json.loads(line), "items") for line in Path(items_file).read_text().splitlines()]
    engine = load_engine("hf", model)

    class Paced:
        # A pause per call, so the kill lands part-way through however fast this machine is.
        name, model_id = engine.name, engine.model_id
        def generate(self, requests, progress=False):
            time.sleep(0.4)
            return engine.generate(requests)

    generate_cot(Paced(), items, Path(out), CoTConfig(max_tokens=8, retries=1, chunk=2))
    """
)


class CountingEngine:
    """Wraps a real engine and records every generation request it is sent."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name, self.model_id = inner.name, inner.model_id
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        self.requests += requests
        return self.inner.generate(requests, progress=progress)


def test_a_process_killed_mid_run_resumes_without_repeating_finished_items(tmp_path: Path, tiny_llama: Path) -> None:
    from aloekit.engines import load_engine

    items = [mcq(i) for i in range(12)]
    items_file, out = tmp_path / "items.jsonl", tmp_path / "cot.jsonl"
    items_file.write_text("".join(json.dumps(item.to_json()) + "\n" for item in items))
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(tiny_llama), str(items_file), str(out)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while not (out.exists() and out.read_text().count("\n") >= 2):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the subprocess wrote nothing in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    finished = {json.loads(line)["id"] for line in out.read_bytes().split(b"\n")[:-1]}
    assert 2 <= len(finished) < len(items)

    engine = CountingEngine(load_engine("hf", str(tiny_llama)))
    generate_cot(engine, items, out, CoTConfig(max_tokens=8, retries=1, chunk=2))  # type: ignore[arg-type]

    asked = {item_of(r, items).id for r in engine.requests}
    assert asked and not asked & finished
    assert sorted(str(row["id"]) for row in read_lines(out)) == sorted(item.id for item in items)


# --- expert explanations --------------------------------------------------------------------------------------


def test_an_expert_explanation_becomes_chain_of_thought_ending_in_the_answer() -> None:
    item = mcq(
        1,
        answer=0,
        explanation="Ans. is 'a' i.e., Aspirin. It irreversibly inhibits COX-1 in platelets for their whole lifespan.",
    )
    cot = explanation_cot(item)
    assert cot is not None
    assert cot.startswith(f"The question asks: {item.question}")
    assert "Aspirin. It irreversibly inhibits COX-1 in platelets for their whole lifespan." in cot
    assert "Ans." not in cot  # the key is stated once, at the end
    assert cot.endswith("\n\nAnswer: A")


def test_an_explanation_that_names_another_option_as_correct_is_not_used() -> None:
    contradicts = "Ans. is 'c' i.e., Warfarin, since long-term anticoagulation needs an oral drug."
    assert explanation_cot(mcq(1, answer=0, explanation=contradicts)) is None
    by_text = "The correct answer is Metformin, which lowers hepatic glucose output in these patients."
    assert explanation_cot(mcq(1, answer=0, explanation=by_text)) is None


def test_an_explanation_that_only_discusses_other_options_is_not_a_contradiction() -> None:
    discusses = "Heparin - acts immediately but needs injections. Aspirin inhibits platelet COX-1 for life."
    assert explanation_cot(mcq(1, answer=0, explanation=discusses)) is not None


@pytest.mark.parametrize("explanation", [None, "", "   ", "Ans. is 'a'", "See Harrison."])
def test_a_missing_or_too_short_explanation_gives_no_chain_of_thought(explanation: str | None) -> None:
    assert explanation_cot(mcq(1, answer=0, explanation=explanation)) is None


# --- a real teacher -------------------------------------------------------------------------------------------

MEDMCQA_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "medmcqa" / "dev.jsonl"


@pytest.mark.slow
def test_smollm2_as_teacher_on_real_medmcqa_items(smollm2_path: Path, tmp_path: Path) -> None:
    if not MEDMCQA_DEV.exists():
        pytest.skip(f"{MEDMCQA_DEV} is not here")
    from aloekit.data.sources.mcqa import load_jsonl, medmcqa_row
    from aloekit.engines import load_engine

    items = load_jsonl(MEDMCQA_DEV, medmcqa_row(1))[:6]
    engine = load_engine("hf", str(smollm2_path))
    started = time.monotonic()
    stats = generate_cot(engine, items, tmp_path / "cot.jsonl", CoTConfig(max_tokens=160, retries=1, chunk=6))
    print(
        f"\nSmolLM2-135M teacher: acceptance {stats.acceptance_rate:.0%} ({stats.accepted}/{stats.attempted}), "
        f"{stats.attempts} attempts, {time.monotonic() - started:.0f} s"
    )

    gold = {item.id: item.answer_letter for item in items}
    for item in load_verified(tmp_path / "cot.jsonl"):
        assert item.explanation is not None
        assert item.explanation.endswith(f"\nAnswer: {gold[item.id]}")
    assert stats.attempted == 6
