"""Specification of Medprompt inference (aloekit.prompting): choice shuffling, voting, the chain-of-thought
database and its retrieval, and the medprompt mode / ablation ladder of ``aloe eval``.

Models are scripted (tests/support.ScriptedEngine) so the arithmetic is checked, not a model; retrieval uses the
real embedded all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aloekit.config import MCQAConfig, MedpromptSettings
from aloekit.data.decontaminate import DecontamConfig, ExtraEvalFile
from aloekit.data.schema import MCQItem
from aloekit.engines.base import GenerationRequest
from aloekit.errors import UserError
from aloekit.evaluation.mcqa import evaluate
from aloekit.prompting import medprompt
from aloekit.prompting.ablation import run_ablation
from aloekit.prompting.ensemble import permutations, shuffle, to_original, vote
from aloekit.prompting.index import CoTDatabase, build_database
from support import ScriptedEngine, aloe, assert_one_line_error

NO_EVAL_SETS = DecontamConfig(benchmarks=(), safety=False)
TOPICS = [
    ("Which drug is first-line for anaphylaxis?", ["Adrenaline", "Antihistamine", "Steroid", "Salbutamol"], 0),
    ("Which vitamin deficiency causes scurvy?", ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], 1),
    ("Which organ secretes insulin?", ["Liver", "Spleen", "Pancreas", "Kidney"], 2),
    ("Which bone is the longest in the human body?", ["Humerus", "Tibia", "Radius", "Femur"], 3),
    ("Which vitamin deficiency causes rickets in children?", ["Vitamin D", "Vitamin B12", "Vitamin C", "Iron"], 0),
    ("Which drug reverses opioid overdose?", ["Flumazenil", "Naloxone", "Atropine", "Glucagon"], 1),
    ("Which hormone lowers blood glucose?", ["Glucagon", "Cortisol", "Insulin", "Adrenaline"], 2),
    (
        "Which chamber of the heart pumps blood to the aorta?",
        ["Right atrium", "Left atrium", "Right ventricle", "Left ventricle"],
        3,
    ),
]


def solved(i: int, question: str, options: list[str], answer: int, item_id: str | None = None) -> MCQItem:
    reasoning = (
        f"The question asks: {question} Weighing each option against the physiology involved, only "
        f"{options[answer]} fits the facts given, and the others do not.\n\nAnswer: {'ABCD'[answer]}"
    )
    return MCQItem(item_id or f"db{i}", question, tuple(options), answer, explanation=reasoning)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    items = [solved(i, *topic) for i, topic in enumerate(TOPICS)]
    out = tmp_path_factory.mktemp("cotdb") / "db"
    build_database(items, out, decontamination=NO_EVAL_SETS)
    return out


# --- choice shuffling and voting --------------------------------------------------------------------------------


@given(st.integers(2, 10).flatmap(lambda n: st.tuples(st.permutations(list(range(n))), st.integers(0, n - 1))))
def test_shuffling_then_mapping_back_recovers_every_option_for_every_permutation(case: tuple[list[int], int]) -> None:
    order, answer = case
    n = len(order)
    item = MCQItem("q", "Which?", tuple(f"option {i}" for i in range(n)), answer)
    shown = shuffle(item, tuple(order))
    assert sorted(shown.options) == sorted(item.options)
    for position in range(n):
        # The option displayed at any position maps back to that same option in the original order.
        assert shown.options[position] == item.options[to_original(position, tuple(order))]  # type: ignore[index]
    assert shown.options[shown.answer] == item.options[item.answer]
    assert to_original(shown.answer, tuple(order)) == item.answer
    assert to_original(None, tuple(order)) is None


def test_run_one_keeps_the_original_order_and_the_others_are_distinct_seeded_shuffles() -> None:
    orders = permutations(4, 5, seed=0, key="q1")
    assert orders[0] == (0, 1, 2, 3)
    assert len(set(orders)) == 5 and all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert permutations(4, 5, seed=0, key="q1") == orders  # reproducible
    assert permutations(4, 5, seed=0, key="q2") != orders  # per question
    assert permutations(2, 5, seed=0, key="q1")[:2] == [(0, 1), (1, 0)]  # only 2 orders exist: they repeat


def test_the_vote_takes_the_plurality_and_breaks_ties_by_the_earliest_answer() -> None:
    assert vote([1, 2, 2, 0, 2]) == 2
    assert vote([2, 0, 0, 2]) == 2  # tie: run 1's answer (the unshuffled prompt), not the lowest letter
    assert vote([3, 1, 1, 3, None]) == 3
    assert vote([None, 1, None]) == 1  # unreadable answers abstain
    assert vote([None, None]) is None  # nothing readable: no guess


# --- the database and retrieval ---------------------------------------------------------------------------------


def test_the_nearest_example_comes_last_next_to_the_question(database: Path) -> None:
    db = CoTDatabase.open(database)
    query = MCQItem("eval1", "Which vitamin deficiency causes scurvy in sailors?", ("C", "D", "A", "K"), 0)
    nearest = db.nearest([query], 3)[0]
    assert [n.similarity for n in nearest] == sorted((n.similarity for n in nearest), reverse=True)
    assert "scurvy" in nearest[0].item.question
    settings = MedpromptSettings(database=database, k=3)
    examples = medprompt.examples_for([query], settings, db, seed=0)[0]
    assert examples[-1].question == nearest[0].item.question
    messages = medprompt.medprompt_messages(query, examples, cot=True)
    assert "scurvy" in messages[-3]["content"]  # the last example turn before the question
    assert messages[-2]["content"] == nearest[0].item.explanation


def test_a_question_is_never_retrieved_as_its_own_example(database: Path) -> None:
    db = CoTDatabase.open(database)
    question, options, answer = TOPICS[1]
    by_text = MCQItem("another-id", question, tuple(options), answer)  # the same question under another id
    by_id = MCQItem("db1", "A rephrased question about vitamin C and scurvy?", tuple(options), answer)
    for query in (by_text, by_id):
        assert all(n.item.id != "db1" for n in db.nearest([query], len(TOPICS))[0])
        assert all(i.id != "db1" for i in db.random(query, len(TOPICS), seed=0))
    assert len(db.nearest([by_text], len(TOPICS))[0]) == len(TOPICS) - 1


def test_evaluation_items_never_enter_the_database(tmp_path: Path) -> None:
    leaked = "Which enzyme is deficient in classic phenylketonuria presenting with musty odour and fair skin?"
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"id": "e1", "question": leaked}) + "\n")
    items = [solved(i, *t) for i, t in enumerate(TOPICS)]
    items.append(solved(99, leaked, ["PAH", "Tyrosinase", "G6PD", "HGPRT"], 0))
    held_out = ExtraEvalFile(name="held-out", path=eval_file, format="jsonl", field="question")
    config = DecontamConfig(benchmarks=(), safety=False, extra=(held_out,))
    manifest = build_database(items, tmp_path / "db", decontamination=config)
    assert manifest["items"] == len(TOPICS)
    assert manifest["decontamination"]["removed"] == [
        {
            "id": "db99",
            "benchmark": "held-out",
            "eval_id": "e1",
            "ngram": manifest["decontamination"]["removed"][0]["ngram"],
        }
    ]
    stored = [json.loads(line)["question"] for line in (tmp_path / "db" / "items.jsonl").open()]
    assert leaked not in stored


def test_items_overlapping_the_questions_evaluated_are_excluded_from_retrieval(database: Path) -> None:
    db = CoTDatabase.open(database)
    question, options, answer = TOPICS[2]
    asked = MCQItem("bench-7", question, tuple(options), answer)
    excluded = db.exclude_overlaps([("medqa_4options", asked)])
    assert excluded == [{"id": "db2", "benchmark": "medqa_4options", "eval_id": "bench-7"}]
    other = MCQItem("x", "Which gland secretes insulin into the blood?", ("a", "b"), 0)
    assert all(n.item.id != "db2" for n in db.nearest([other], len(TOPICS))[0])
    assert db.available == len(TOPICS) - 1


def test_a_database_needs_verified_reasoning_and_a_complete_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no chain-of-thought"):
        build_database([MCQItem("a", "Q?", ("x", "y"), 0)], tmp_path / "db", decontamination=NO_EVAL_SETS)
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="not a Medprompt database"):
        CoTDatabase.open(tmp_path / "half")


# --- medprompt mode end to end (scripted model) ----------------------------------------------------------------


def medqa_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "medqa").mkdir(parents=True)
    rows = [
        {
            "question": "A sailor has bleeding gums after months at sea. Which vitamin is lacking?",
            "options": {"A": "Vitamin A", "B": "Vitamin D", "C": "Vitamin C", "D": "Vitamin K"},
            "answer_idx": "C",
        },
        {
            "question": "A child with bowed legs and low sunlight exposure lacks which vitamin?",
            "options": {"A": "Vitamin D", "B": "Vitamin C", "C": "Vitamin B1", "D": "Iron"},
            "answer_idx": "A",
        },
        {
            "question": "After an opioid overdose with pinpoint pupils, which drug is given?",
            "options": {"A": "Atropine", "B": "Glucagon", "C": "Flumazenil", "D": "Naloxone"},
            "answer_idx": "D",
        },
    ]
    (root / "medqa/test.jsonl").write_text("".join(json.dumps({**r, "answer": "x"}) + "\n" for r in rows))
    return root


KNOWS = {"bleeding gums": "Vitamin C", "bowed legs": "Vitamin D", "opioid overdose": "Naloxone"}


def asked(request: GenerationRequest) -> str:
    """The question of the request (the last user turn that shows options)."""
    return [m for m in request.messages or () if m["role"] == "user" and "Options:" in m["content"]][-1]["content"]


def knows_the_answer(request: GenerationRequest) -> str:
    """A position-invariant model: it answers the letter under which the right text is shown."""
    question = asked(request)
    right = next(text for cue, text in KNOWS.items() if cue in question)
    shown = dict(re.findall(r"^([A-J])\. (.+)$", question, flags=re.MULTILINE))
    letter = next(k for k, v in shown.items() if v == right)
    return f"Reasoning about each option in turn.\nAnswer: {letter}"


def medprompt_config(data: Path, database: Path | None, **settings: Any) -> MCQAConfig:
    return MCQAConfig(
        benchmarks=("medqa_4options",),
        data_dir=data,
        mode="medprompt",
        medprompt={"database": database, "k": 2, "runs": 5, **settings},
    )


def test_every_shuffled_run_is_mapped_back_to_the_original_letters(database: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine(knows_the_answer)
    results = evaluate(
        engine,
        medprompt_config(medqa_data(tmp_path), database),
        tmp_path / "out",
        model={"fingerprint": "m"},
        progress=False,
    )
    assert results["benchmarks"]["medqa_4options"]["acc"] == 1.0
    assert results["benchmarks"]["medqa_4options"]["agreement"] == 1.0
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    for s in samples:
        assert len({tuple(a["order"]) for a in s["answers"]}) == 5  # five different orders...
        assert {a["original"] for a in s["answers"]} == {s["gold"]}  # ...all read back as the gold option
        assert len(s["examples"]) == 2
    # One engine call for the whole chunk: 3 questions x 5 runs, batched together.
    assert [len(call) for call in engine.calls] == [15]


def test_a_position_biased_model_is_outvoted_by_the_shuffles(database: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda r: "Answer: A")
    results = evaluate(
        engine,
        medprompt_config(medqa_data(tmp_path), database),
        tmp_path / "out",
        model={"fingerprint": "m"},
        progress=False,
    )
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    for s in samples:
        originals = [a["original"] for a in s["answers"]]
        assert originals[0] == 0 and len(set(originals)) > 1  # "A" means a different option in each order
        counts = {o: originals.count(o) for o in originals}
        assert counts[s["pred"]] == max(counts.values())
    assert results["benchmarks"]["medqa_4options"]["agreement"] < 1.0


def test_unreadable_answers_get_a_bounded_follow_up_and_otherwise_abstain(database: Path, tmp_path: Path) -> None:
    def script(request: GenerationRequest) -> str:
        if "State your final answer now" in (request.messages or ())[-1]["content"]:
            return knows_the_answer(request) if "bowed legs" in asked(request) else "I am unsure."
        return "Let me think about it."

    engine = ScriptedEngine(script)
    results = evaluate(
        engine,
        medprompt_config(medqa_data(tmp_path), database, retries=1),
        tmp_path / "out",
        model={"fingerprint": "m"},
        progress=False,
    )
    r = results["benchmarks"]["medqa_4options"]
    assert r["n"] == 3 and r["acc"] == pytest.approx(1 / 3)  # only the question whose follow-up was answered
    assert r["unparseable_rate"] == pytest.approx(2 / 3)
    assert r["retries"] == 15  # one follow-up per unreadable answer, never more
    assert [len(call) for call in engine.calls] == [15, 15]


def test_self_consistency_samples_all_vote(database: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda r: [knows_the_answer(r), "Answer: A", knows_the_answer(r)])
    config = medprompt_config(medqa_data(tmp_path), database, runs=2, samples=3, temperature=0.7)
    results = evaluate(engine, config, tmp_path / "out", model={"fingerprint": "m"}, progress=False)
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    assert all(len(s["answers"]) == 6 for s in samples)
    assert results["benchmarks"]["medqa_4options"]["acc"] == 1.0
    assert all(r.n == 3 and r.temperature == 0.7 for r in engine.requests)


def test_a_killed_medprompt_run_resumes_without_asking_again(database: Path, tmp_path: Path) -> None:
    data = medqa_data(tmp_path)
    config = medprompt_config(data, database).model_copy(update={"checkpoint_every": 5})  # one question per chunk
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            ScriptedEngine(knows_the_answer, die_after=2),
            config,
            tmp_path / "out",
            model={"fingerprint": "m"},
            progress=False,
        )
    resumed = ScriptedEngine(knows_the_answer)
    results = evaluate(resumed, config, tmp_path / "out", model={"fingerprint": "m"}, progress=False)
    assert [len(call) for call in resumed.calls] == [5]  # only the third question
    assert results["benchmarks"]["medqa_4options"]["acc"] == 1.0


def test_the_ablation_ladder_reports_every_step_and_reuses_identical_requests(database: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine(knows_the_answer)
    result = run_ablation(
        engine,
        medprompt_config(medqa_data(tmp_path), database),
        tmp_path / "ladder",
        model={"fingerprint": "m", "reference": "scripted"},
        progress=False,
        log=lambda m: None,
    )
    names = [s["step"] for s in result["steps"]]
    assert names == ["zero-shot", "random few-shot", "+ CoT", "+ kNN", "+ choice-shuffle ensemble"]
    assert all(s["n"] == 3 and len(s["acc_ci95"]) == 2 for s in result["steps"])
    assert "change" not in result["steps"][0] and all("delta_ci95" in s["change"] for s in result["steps"][1:])
    # 3 questions x (1 + 1 + 1 + 1) single runs, then only the ensemble's 4 shuffled runs: run 1 is step 4's.
    assert len(engine.requests) == 3 * 4 + 3 * 4
    zero_shot = engine.calls[0][0]
    assert len(zero_shot.messages or ()) == 2 and zero_shot.max_tokens == 32
    assert (tmp_path / "ladder" / "ablation.png").stat().st_size > 1000
    assert json.loads((tmp_path / "ladder" / "ablation.json").read_text())["steps"][4]["acc"] == 1.0


def test_medprompt_without_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    run = aloe(
        "eval",
        "--mode",
        "medprompt",
        "--benchmarks",
        "medqa_4options",
        "--out",
        str(tmp_path / "o"),
        "--data-dir",
        str(medqa_data(tmp_path)),
    )
    assert_one_line_error(run, "--cot-db")
    run = aloe("eval", "--ablation", "--benchmarks", "medqa_4options", "--out", str(tmp_path / "o"))
    assert_one_line_error(run, "--mode medprompt")


def test_medprompt_over_a_served_model_matches_the_local_engine(database: Path, tiny_llama: Path, tmp_path: Path):
    from aloekit.engines.hf import HFEngine
    from aloekit.engines.openai import OpenAIEngine
    from aloekit.serve import ServerLimits, create_app, serve_in_thread

    config = medprompt_config(medqa_data(tmp_path), database, runs=2, max_tokens=12)
    local = HFEngine.from_reference(str(tiny_llama), batch_size=4)
    direct = evaluate(local, config, tmp_path / "direct", model={"fingerprint": "t"}, progress=False)
    with serve_in_thread(create_app(local, api_key=None, limits=ServerLimits(), served_name="tiny")) as url:
        served = evaluate(
            OpenAIEngine(base_url=url + "/v1", max_retries=0),
            config,
            tmp_path / "served",
            model={"fingerprint": "t-served"},
            progress=False,
        )
    for name in ("direct", "served"):
        assert (tmp_path / name / "samples.jsonl").is_file()
    lines = [[json.loads(x) for x in (tmp_path / n / "samples.jsonl").open()] for n in ("direct", "served")]
    assert [[a["generation"] for a in s["answers"]] for s in lines[0]] == [
        [a["generation"] for a in s["answers"]] for s in lines[1]
    ]
    assert direct["benchmarks"]["medqa_4options"]["acc"] == served["benchmarks"]["medqa_4options"]["acc"]


def test_aloe_medprompt_db_builds_from_verified_cot_and_refuses_no_input(tmp_path: Path) -> None:
    cot = tmp_path / "cot.jsonl"
    records = [
        {"id": item.id, "status": "accepted", "reasoning": item.explanation, "item": item.to_json()}
        for item in (solved(i, *t) for i, t in enumerate(TOPICS[:4]))
    ]
    records.append({"id": "bad", "status": "rejected", "reasoning": None, "item": solved(9, *TOPICS[4]).to_json()})
    cot.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = medqa_data(tmp_path)
    run = aloe("medprompt", "db", "--cot", str(cot), "--data-dir", str(data), "--out", str(tmp_path / "db"))
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "4 items" in run.stdout and "medqa_4options" in run.stdout
    assert len(CoTDatabase.open(tmp_path / "db")) == 4
    assert_one_line_error(aloe("medprompt", "db", "--out", str(tmp_path / "db2")), "--cot", "--source")
