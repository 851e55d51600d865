"""Specification of `aloe eval` for medical multiple-choice benchmarks: lm-eval's prompts, honest metrics,
resumable runs, and one-line errors for bad data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from aloekit.config import MCQAConfig
from aloekit.engines import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.mcqa import evaluate
from support import aloe, assert_one_line_error

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside this checkout")


def medqa_row(i: int, answer: str = "B") -> dict[str, object]:
    return {
        "question": f"A {30 + i}-year-old has chest pain. Most likely diagnosis?",
        "options": {"A": "Angina", "B": "Myocardial infarction", "C": "Costochondritis", "D": "Reflux"},
        "answer_idx": answer,
        "answer": "x",
        "meta_info": "step1",
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder with a MedQA file (the layout shared/data documents; MedQA itself is kept out of it)."""
    root = tmp_path / "data"
    (root / "medqa").mkdir(parents=True)
    rows = [medqa_row(i, "ABCD"[i % 4]) for i in range(12)]
    (root / "medqa/test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


class ScriptedEngine:
    """An engine whose scores are written by the test: the harness's arithmetic is checked, not a model."""

    name = "scripted"
    model_id = "scripted"

    def __init__(self, logprobs: dict[str, float] | None = None, texts: Sequence[str] = ()) -> None:
        self.logprobs = logprobs or {}
        self.texts = list(texts)
        self.calls = 0

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        self.calls += 1
        return [Loglikelihood(self.logprobs.get(r.continuation, -5.0), False, 1) for r in requests]

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        self.calls += 1
        return [Generation([self.texts.pop(0)], ["stop"], 10, [3]) for _ in requests]

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[object]:
        raise NotImplementedError

    def close(self) -> None:
        pass


MODEL = {"reference": "scripted", "fingerprint": "scripted-v1"}


# --- prompts: lm-eval's, string for string ------------------------------------------------------------------


def test_medqa_prompt_is_lm_evals_medqa_4options_prompt():
    item = benchmarks.mcqa.medqa_row(medqa_row(0), "f:1")
    bench = benchmarks.REGISTRY["medqa_4options"]
    assert prompts.loglik_context(bench, item) == (
        "Question: A 30-year-old has chest pain. Most likely diagnosis?\n"
        "A. Angina\nB. Myocardial infarction\nC. Costochondritis\nD. Reflux\nAnswer:"
    )
    assert prompts.choices(bench, item) == ["A", "B", "C", "D"]


@needs_shared
def test_mmlu_prompt_has_lm_evals_description_and_first_n_few_shot_examples():
    bench = benchmarks.REGISTRY["mmlu_anatomy"]
    items = benchmarks.load(bench, SHARED)
    shots = benchmarks.load(bench, SHARED, fewshot=True)
    context = prompts.loglik_context(bench, items[0], shots[:2])
    assert context.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    first_shot = prompts.question_text(bench, shots[0]) + " " + "ABCD"[shots[0].answer] + "\n\n"
    assert context.index(first_shot) == len(prompts.description(bench))
    q = items[0]
    assert context.endswith(
        f"\n\n{q.question.strip()}\nA. {q.options[0]}\nB. {q.options[1]}\nC. {q.options[2]}\nD. {q.options[3]}\nAnswer:"
    )
    assert context.endswith("Answer:") and context.count("Answer:") == 3


@needs_shared
def test_pubmedqa_uses_the_official_500_test_pmids_and_yes_no_maybe_continuations():
    bench = benchmarks.REGISTRY["pubmedqa"]
    items = benchmarks.load(bench, SHARED)
    truth = json.loads((SHARED / "pubmedqa/test_ground_truth.json").read_text())
    assert [i.id for i in items] == list(truth)
    assert [i.options[i.answer] for i in items] == list(truth.values())
    assert prompts.choices(bench, items[0]) == ["yes", "no", "maybe"]
    assert prompts.loglik_context(bench, items[0]).startswith("Abstract: ")


@needs_shared
def test_medmcqa_reads_the_one_based_cop_of_the_local_copy():
    items = benchmarks.load(benchmarks.REGISTRY["medmcqa"], SHARED)
    first = json.loads((SHARED / "medmcqa/dev.jsonl").read_text().splitlines()[0])
    assert len(items) == 4183
    assert items[0].answer == first["cop"] - 1


def test_groups_expand_to_their_members_without_duplicates():
    names, groups = benchmarks.expand("mmlu_anatomy,mmlu_medical")
    assert names[0] == "mmlu_anatomy" and len(names) == 6 and len(set(names)) == 6
    assert list(groups) == ["mmlu_medical"]
    assert len(benchmarks.expand("multimedqa")[0]) == 9


# --- metrics --------------------------------------------------------------------------------------------------


def test_acc_takes_the_argmax_and_acc_norm_divides_by_the_choices_length(data_dir, tmp_path):
    # " B" always wins on raw log-likelihood; per character, " A" (length 1) ... all have length 1 here, so
    # acc_norm equals acc for letters: check that, and that predictions are B everywhere.
    engine = ScriptedEngine({" A": -3.0, " B": -1.0, " C": -2.0, " D": -4.0})
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir)
    results = evaluate(engine, config, tmp_path / "out", model=MODEL, progress=False)
    r = results["benchmarks"]["medqa_4options"]
    assert r["n"] == 12 and r["acc"] == pytest.approx(3 / 12) and r["acc_norm"] == r["acc"]
    assert r["predicted"] == {"A": 0.0, "B": 1.0, "C": 0.0, "D": 0.0, "unparseable": 0.0}
    assert r["gold"] == {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25, "unparseable": 0.0}
    lo, hi = r["acc_ci95"]
    assert lo < r["acc"] < hi


def test_acc_norm_prefers_the_option_with_the_best_log_likelihood_per_character(tmp_path):
    from aloekit.evaluation.cache import RequestCache
    from aloekit.evaluation.mcqa_scoring import score_loglik

    bench = benchmarks.Benchmark("t", "headqa", "headqa", local=None, hub=None, choices="texts")
    item = benchmarks.mcqa.headqa_row(
        {"qtext": "q", "answers": [{"aid": 1, "atext": "short"}, {"aid": 2, "atext": "a much longer answer"}], "ra": 2},
        "w",
    )
    engine = ScriptedEngine({" short": -6.0, " a much longer answer": -10.0})
    run = score_loglik(
        engine, bench, [item], [], MCQAConfig(benchmarks=("x",)), RequestCache(tmp_path / "cache.jsonl"), "m", False
    )
    assert run.scored[0].pred == 0  # -6 > -10
    assert run.scored[0].pred_norm == 1  # -10/20 > -6/5


def test_generate_mode_counts_unreadable_answers_as_unparseable_and_wrong(data_dir, tmp_path):
    texts = ["Answer: A", "Answer: B", "I am not sure.", "The answer is D."] * 3
    engine = ScriptedEngine(texts=texts)
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir, mode="generate")
    r = evaluate(engine, config, tmp_path / "out", model=MODEL, progress=False)["benchmarks"]["medqa_4options"]
    # gold cycles A, B, C, D: A and B right, C unreadable, D right.
    assert r["acc"] == pytest.approx(9 / 12)
    assert r["unparseable_rate"] == pytest.approx(3 / 12)
    assert r["predicted"]["unparseable"] == pytest.approx(0.25)
    samples = [json.loads(line) for line in (tmp_path / "out/samples.jsonl").read_text().splitlines()]
    assert samples[2]["extracted"] is None and samples[2]["correct"] is False
    assert samples[0]["prompt"][-1]["role"] == "user" and "Answer: X" in samples[0]["prompt"][-1]["content"]


def test_results_record_config_model_versions_and_seed(data_dir, tmp_path):
    engine = ScriptedEngine({" B": -1.0})
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir, limit=5, seed=3)
    results = evaluate(engine, config, tmp_path / "out", model=MODEL, progress=False)
    on_disk = json.loads((tmp_path / "out/results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["config"]["limit"] == 5 and on_disk["seed"] == 3 and on_disk["model"] == MODEL
    assert {"aloekit", "python", "torch", "transformers"} <= set(on_disk["versions"])
    assert on_disk["benchmarks"]["medqa_4options"]["n"] == 5


def test_a_cache_never_serves_one_models_scores_to_another(data_dir, tmp_path):
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir)
    first = ScriptedEngine({" B": -1.0})
    evaluate(first, config, tmp_path / "out", model=MODEL, progress=False)
    same = ScriptedEngine({" B": -1.0})
    assert (
        evaluate(same, config, tmp_path / "out", model=MODEL, progress=False)["benchmarks"]["medqa_4options"][
            "from_cache"
        ]
        == 12
    )
    assert same.calls == 0
    other = ScriptedEngine({" C": -1.0})
    r = evaluate(other, config, tmp_path / "out", model={**MODEL, "fingerprint": "other"}, progress=False)
    assert other.calls > 0 and r["benchmarks"]["medqa_4options"]["predicted"]["C"] == 1.0


# --- resuming after a kill ------------------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from aloekit.config import MCQAConfig
    from aloekit.engines.hf import HFEngine
    from aloekit.evaluation.mcqa import evaluate

    model, data, out, delay = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    engine = HFEngine.from_reference(model, batch_size=4)
    scored = engine.loglikelihood
    def slow(requests, **kw):
        time.sleep(delay)  # long enough per checkpoint for the test to kill the run part-way
        return scored(requests, **kw)
    engine.loglikelihood = slow
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data, checkpoint_every=2)
    r = evaluate(engine, config, out, model={"reference": model, "fingerprint": "tiny"}, progress=False)
    print(r["benchmarks"]["medqa_4options"]["computed"])
    """
)


def run_runner(tiny: Path, data: Path, out: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tiny), str(data), str(out), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_a_killed_run_resumes_without_redoing_finished_questions_and_gives_the_same_results(
    tiny_llama, data_dir, tmp_path
):
    killed = tmp_path / "killed"
    process = run_runner(tiny_llama, data_dir, killed, delay=0.5)
    cache = killed / "cache.jsonl"
    deadline = time.monotonic() + 120
    while not (cache.is_file() and len(cache.read_text().splitlines()) >= 8):  # two checkpoints (2 x 2 x 4 options)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the run wrote no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists()  # nothing that looks finished
    done_before = len(cache.read_text().splitlines()) // 4

    resumed = run_runner(tiny_llama, data_dir, killed, delay=0.0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert int(out.strip().splitlines()[-1]) == 12 - done_before  # only the unfinished questions were scored

    fresh = run_runner(tiny_llama, data_dir, tmp_path / "fresh", delay=0.0)
    fresh.communicate(timeout=120)
    a = json.loads((killed / "results.json").read_text())["benchmarks"]["medqa_4options"]
    b = json.loads((tmp_path / "fresh/results.json").read_text())["benchmarks"]["medqa_4options"]
    assert (a["acc"], a["acc_norm"], a["predicted"]) == (b["acc"], b["acc_norm"], b["predicted"])
    killed_samples = [
        v for x in (killed / "samples.jsonl").read_text().splitlines() for v in json.loads(x)["loglikelihoods"]
    ]
    fresh_samples = [
        v for x in (tmp_path / "fresh/samples.jsonl").read_text().splitlines() for v in json.loads(x)["loglikelihoods"]
    ]
    assert killed_samples == pytest.approx(fresh_samples, abs=1e-4)


# --- bad input: one line, exit code 2 -------------------------------------------------------------------------


def test_an_unknown_benchmark_is_one_line_naming_it_and_the_known_ones(tmp_path):
    result = aloe("eval", "--benchmarks", "mmlu_anatomy,usmle_hard", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "usmle_hard", "medqa_4options")


def test_a_malformed_benchmark_file_is_one_line_naming_the_file_and_row(tiny_llama, data_dir, tmp_path):
    path = data_dir / "medqa/test.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]  # truncated JSON
    path.write_text("\n".join(lines) + "\n")
    result = aloe(
        "eval",
        "--model",
        str(tiny_llama),
        "--benchmarks",
        "medqa_4options",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path / "o"),
    )
    assert_one_line_error(result, f"{path}:4", "not valid JSON")
    assert not (tmp_path / "o/results.json").exists()


def test_a_missing_answer_key_is_one_line_naming_the_row_and_field(tiny_llama, data_dir, tmp_path):
    path = data_dir / "medqa/test.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    del rows[6]["answer_idx"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = aloe(
        "eval",
        "--model",
        str(tiny_llama),
        "--benchmarks",
        "medqa_4options",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path / "o"),
    )
    assert_one_line_error(result, f"{path}:7", "answer_idx")


def test_a_missing_benchmark_file_says_where_it_was_expected(tiny_llama, tmp_path):
    (tmp_path / "empty").mkdir()
    result = aloe(
        "eval",
        "--model",
        str(tiny_llama),
        "--benchmarks",
        "medqa_4options",
        "--data-dir",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "o"),
    )
    assert_one_line_error(result, "medqa/test.jsonl")


def test_an_answer_letter_outside_the_options_is_refused():
    with pytest.raises(UserError, match="'answer_idx' is 'E'"):
        benchmarks.mcqa.medqa_row(medqa_row(0, "E"), "f:1")


# --- the real thing -------------------------------------------------------------------------------------------


@needs_shared
def test_aloe_eval_on_a_tiny_model_writes_results_and_samples_for_real_benchmarks(tiny_llama, tmp_path):
    out = tmp_path / "o"
    result = aloe(
        "eval", "--model", str(tiny_llama), "--benchmarks", "mmlu_anatomy,pubmedqa", "--data-dir", str(SHARED),
        "--out", str(out), "--limit", "6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mmlu_anatomy" in result.stdout and "pubmedqa" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"mmlu_anatomy", "pubmedqa"}
    assert results["model"]["fingerprint"] and results["model"]["path"] == str(tiny_llama)
    samples = (out / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 12
    assert json.loads(samples[-1])["choices"] == ["yes", "no", "maybe"]


# --- the Hub path, on rows shaped like each dataset card -------------------------------------------------------

HUB_ROWS = {
    "medqa_4options": (
        {"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "C", "answer": "c"},
        2,
    ),
    "medmcqa": ({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0, "id": "m1"}, 0),
    "pubmedqa": ({"QUESTION": "Q?", "CONTEXTS": ["c1", "c2"], "final_decision": "maybe", "PUBMED_ID": "1"}, 2),
    "mmlu_anatomy": ({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 3, "subject": "anatomy"}, 3),
    "careqa": ({"question": "Q?", "op1": "a", "op2": "b", "op3": "c", "op4": "d", "cop": 4, "unique_id": "u"}, 3),
    "headqa": ({"qtext": "Q?", "answers": [{"aid": 2, "atext": "b"}, {"aid": 1, "atext": "a"}], "ra": 2}, 1),
}


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_rows_are_read_with_each_datasets_own_fields_and_answer_base(name, monkeypatch):
    import datasets

    row, answer = HUB_ROWS[name]
    bench = benchmarks.REGISTRY[name]
    asked: list[tuple[object, ...]] = []

    def fake_load_dataset(path: str, config: str | None = None, *, split: str) -> list[dict[str, object]]:
        asked.append((path, config, split))
        return [row]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (item,) = benchmarks.load(bench, None)
    assert asked == [(bench.hub.path, bench.hub.name, bench.hub.split)]
    assert item.answer == answer and item.question == "Q?"
    if name == "headqa":
        assert item.options == ("a", "b")  # ordered by answer id, not by list position


def test_a_hub_dataset_that_cannot_be_loaded_says_how_to_use_local_files(monkeypatch):
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match=r"cannot load cais/mmlu .*--data-dir with mmlu_medical/test/anatomy_test.csv"):
        benchmarks.load(benchmarks.REGISTRY["mmlu_anatomy"], None)


def test_a_local_medmcqa_file_in_the_zero_based_hub_layout_is_refused_not_misread(tmp_path):
    (tmp_path / "medmcqa").mkdir()
    row = {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0}
    (tmp_path / "medmcqa/dev.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="1-based"):
        benchmarks.load(benchmarks.REGISTRY["medmcqa"], tmp_path)


def test_a_served_model_scores_the_same_as_the_local_one(tiny_llama, data_dir, tmp_path):
    from aloekit.engines.hf import HFEngine
    from aloekit.engines.openai import OpenAIEngine
    from aloekit.serve import ServerLimits, create_app, serve_in_thread

    local = HFEngine.from_reference(str(tiny_llama), batch_size=4)
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir)
    here = evaluate(local, config, tmp_path / "local", model={"fingerprint": "local"}, progress=False)
    with serve_in_thread(create_app(local, api_key=None, limits=ServerLimits(), served_name="tiny")) as url:
        remote = OpenAIEngine(base_url=url + "/v1")
        there = evaluate(remote, config, tmp_path / "remote", model={"fingerprint": "remote"}, progress=False)
    a = [json.loads(x) for x in (tmp_path / "local/samples.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "remote/samples.jsonl").read_text().splitlines()]
    assert [s["pred"] for s in a] == [s["pred"] for s in b]
    for x, y in zip(a, b, strict=True):
        assert x["loglikelihoods"] == pytest.approx(y["loglikelihoods"], abs=1e-4)
    assert here["benchmarks"]["medqa_4options"]["acc"] == there["benchmarks"]["medqa_4options"]["acc"]


def test_a_file_benchmark_reads_mcq_json_lines_and_names_a_bad_row(tmp_path):
    from aloekit.config import MCQAConfig
    from aloekit.evaluation.mcqa import load_benchmarks

    good = tmp_path / "mine.jsonl"
    good.write_text(
        '{"id": "q1", "question": "Which organ makes insulin?", "options": ["Liver", "Pancreas"], "answer": 1}\n'
    )
    ((items, shots),) = load_benchmarks(MCQAConfig(benchmarks=f"file:{good}")).values()
    assert [(i.id, i.answer) for i in items] == [("q1", 1)] and shots == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "question": "Which organ?", "options": ["Liver"], "answer": 3}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl"):
        load_benchmarks(MCQAConfig(benchmarks=f"file:{bad}"))
    with pytest.raises(UserError, match="not found"):
        load_benchmarks(MCQAConfig(benchmarks=f"file:{tmp_path / 'absent.jsonl'}"))
