"""Specification of ``aloe run``'s resume: killed (SIGKILL, as a crash or a pre-empted job would be) during each
stage in turn on a tiny random model, every rerun skips the stages that finished and continues the killed one;
the last run ends with a report. Also: a second run of a finished recipe does nothing, and a changed section
reruns its stage and the ones after it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aloekit.recipe.run import STAGES

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "src" / "aloekit" / "demo_data"


def _pairs(path: Path, n: int, topic: str) -> Path:
    rows = [
        {
            "id": f"{topic}-{i}",
            "prompt": f"Question {i} about {topic}?",
            "chosen": f"A careful answer about {topic} number {i}: see a clinician.",
            "rejected": f"A careless answer {i}.",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# A letter phase: the held-in MCQs keyed to the tiny model's own cloze answers, plain letters at every rotation.
_LETTERS_DATA = """  letters:
    validation: 0.0
    sources: [{{path: "{{holdout}}/mcq-train.jsonl", format: mcq, cap: 6, cloze_answers: {{scan: 6}}}}]
    responder: {{model: "{model}", backend: hf, batch_size: 4}}
    mcq: {{rotations: 4}}
    decontamination: {{benchmarks: [], safety: false}}
"""
_LETTERS = """letters:
  max_length: 256
  per_device_batch_size: 2
  gradient_accumulation: 1
  max_steps: 2
  eval_steps: 1
  save_steps: 1
  validation_fraction: 0.2
  logging: {steps: 1, tensorboard: false}
"""


def _recipe(tmp_path: Path, model: Path, general_section: str | None = None, letters: bool = False) -> Path:
    general = _pairs(tmp_path / "general.jsonl", 8, "medicine")
    safety = _pairs(tmp_path / "safety.jsonl", 8, "safety")
    general_section = general_section or f'pairs: [{{path: "{general}", format: preference}}]'
    text = f"""
name: tiny
seed: 0
models: {{base: "{model}", instruct: "{model}"}}
engine: {{backend: hf, batch_size: 4}}
data:
  holdout:
    - {{name: mcq, path: "{DEMO}/mcq.jsonl", fraction: 0.25}}
    - {{name: harmful, path: "{DEMO}/harmful.jsonl", fraction: 0.2}}
  mixture:
    validation: 0.2
    sources: [{{path: "{{holdout}}/mcq-train.jsonl", format: mcq, cap: 16}}]
    decontamination: {{benchmarks: [], safety: false}}
  prefs_general:
    validation: 0.0
    {general_section}
    decontamination: {{benchmarks: [], safety: false}}
  prefs_safety:
    validation: 0.0
    pairs: [{{path: "{safety}", format: preference}}]
    decontamination: {{benchmarks: [], safety: false}}
  cot_db:
    sources: [{{path: "{{holdout}}/mcq-train.jsonl", format: mcq, cap: 24}}]
{_LETTERS_DATA.format(model=model) if letters else ""}sft:
  max_length: 256
  per_device_batch_size: 2
  gradient_accumulation: 1
  max_steps: 3
  eval_steps: 1
  save_steps: 1
  validation_fraction: 0.2
  logging: {{steps: 1, tensorboard: false}}
{_LETTERS if letters else ""}merge:
  merge_method: dare_ties
  base_model: "{{base}}"
  models:
    - {{model: "{{sft}}", parameters: {{weight: 0.6, density: 0.5}}}}
    - {{model: "{{instruct}}", parameters: {{weight: 0.4, density: 0.5}}}}
  dtype: float32
dpo:
  settings: {{per_device_batch_size: 2, save_steps: 1, logging: {{steps: 1, tensorboard: false}}}}
  general: {{max_steps: 2, max_length: 256}}
  safety: {{max_steps: 2, max_length: 256}}
eval:
  benchmarks: ["file:{{holdout}}/mcq-eval.jsonl"]
  limit: 6
  medprompt:
    limit: 3
    ablation: true
    settings: {{k: 1, runs: 2, max_tokens: 8, cot: false}}
safety:
  suites: ["file:{{holdout}}/harmful-eval.jsonl"]
  styles: [plain, role_play]
  limit: 3
  max_tokens: 8
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def _start(recipe: Path, run: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "aloekit.cli", "run", str(recipe), "--out", str(run)],
            stdout=sink,
            stderr=sink,
            env=env,
        )


def _run_to_end(recipe: Path, run: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "aloekit.cli", "run", str(recipe), "--out", str(run)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)


def _status(run: Path, stage: str) -> str | None:
    try:
        return json.loads((run / stage / "manifest.json").read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        return None


def _finished_at(run: Path) -> dict[str, str]:
    times = {}
    for stage in STAGES:
        if _status(run, stage) == "finished":
            times[stage] = json.loads((run / stage / "manifest.json").read_text())["finished"]
    return times


def test_a_run_killed_in_each_stage_in_turn_resumes_without_redoing_finished_stages(
    tmp_path: Path, tiny_llama: Path
) -> None:
    recipe = _recipe(tmp_path, tiny_llama)
    run = tmp_path / "run"
    for index, stage in enumerate(STAGES):
        log = tmp_path / f"attempt-{index}.log"
        before = _finished_at(run)
        process = _start(recipe, run, log)
        deadline = time.monotonic() + 600
        while _status(run, stage) != "running":
            assert process.poll() is None, f"the run ended before stage {stage} started:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"stage {stage} never started:\n{log.read_text()}"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        output = log.read_text()
        assert _status(run, stage) == "running", f"{stage} was not killed mid-way"
        # Everything before the killed stage finished, and what had finished in an earlier attempt was skipped,
        # not redone: the same finish times, and the log says so.
        assert set(_finished_at(run)) == set(STAGES[:index])
        for done, finished in before.items():
            assert _finished_at(run)[done] == finished
            assert f"{done}: finished earlier with the same inputs, skipped" in output
        if index:
            assert f"{STAGES[index - 1]}: resuming its partial work" in output

    log = tmp_path / "final.log"
    before = _finished_at(run)
    final = _start(recipe, run, log)
    assert final.wait(timeout=900) == 0, log.read_text()
    output = log.read_text()
    assert "report: resuming its partial work" in output
    for done, finished in before.items():
        assert _finished_at(run)[done] == finished, f"{done} was redone"
    assert set(_finished_at(run)) == set(STAGES)
    assert (run / "report" / "report.html").is_file()
    assert "report: " + str(run / "report" / "report.html") in output
    # The report of a real run shows its charts in a browser (training curves, benchmarks, safety...).
    from test_report_browser import charts_shown

    loaded, found, total = charts_shown(tmp_path, run / "report" / "report.html")
    assert loaded == found == total >= 3

    # A finished run asked again does nothing.
    complete = _finished_at(run)
    again = _run_to_end(recipe, run)
    assert again.returncode == 0, again.stderr
    assert all(f"{s}: finished earlier with the same inputs, skipped" in again.stderr for s in STAGES)
    assert _finished_at(run) == complete

    # A changed safety section reruns safety and the report, nothing before them.
    changed = recipe.read_text().replace("styles: [plain, role_play]", "styles: [plain]")
    recipe.write_text(changed)
    finished = _finished_at(run)
    rerun = _run_to_end(recipe, run)
    assert rerun.returncode == 0, rerun.stderr
    after = _finished_at(run)
    assert [s for s in STAGES if after[s] != finished[s]] == ["safety", "report"]


# --- --only and --from on every stage -------------------------------------------------------------------------
#
# One real run of the tiny recipe (module scope) is kept as a snapshot and restored after each test. --only X
# reruns stage X for real; --from X, and the plain run that follows --only X, replay the stages they rerun from the
# snapshot (their folders copied back, their outputs read from the snapshot's manifests), so each stage's real work
# runs once per test and the runner's decisions on the real wiring are checked for every stage.


def _in_process(recipe_path: Path, run: Path, **flags: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    from aloekit.recipe import load_recipe
    from aloekit.recipe.run import run_recipe

    recipe, text, folder = load_recipe(recipe_path, run=run)
    assert folder == run
    lines: list[str] = []
    return run_recipe(recipe, text, recipe_path, folder, log=lines.append, **flags), lines  # type: ignore[arg-type]


def _ran(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines if line.endswith((": running", ": resuming its partial work"))]


def _manifest_text(run: Path, stage: str) -> str:
    return (run / stage / "manifest.json").read_text()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> tuple[Path, Path, Path]:
    """(recipe file, run folder, snapshot of the finished run folder)."""
    root = tmp_path_factory.mktemp("stages")
    recipe = _recipe(root, tiny_llama)
    run = root / "run"
    manifests, lines = _in_process(recipe, run)
    assert _ran(lines) == list(STAGES) and all(m["status"] == "finished" for m in manifests.values())
    snapshot = root / "snapshot"
    shutil.copytree(run, snapshot)
    return recipe, run, snapshot


@pytest.fixture
def run_folder(finished: tuple[Path, Path, Path]) -> Iterator[tuple[Path, Path, Path]]:
    """The finished run, restored from its snapshot after the test (each test starts from the same run)."""
    yield finished
    _, run, snapshot = finished
    shutil.rmtree(run)
    shutil.copytree(snapshot, run)


def _replay_stages(snapshot: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every stage's function replaced by a replay from the snapshot; returns the stages replayed, in order. The
    replay also checks that the typed inputs it gets are the outputs the earlier stages recorded."""
    from aloekit.recipe.runner import StageOutputs
    from aloekit.recipe.stages import data, dpo, evaluate, merge, report, safety, sft

    types = {
        "data": data.DataOutputs,
        "sft": sft.SFTOutputs,
        "merge": merge.MergeOutputs,
        "dpo": dpo.DPOOutputs,
        "safety": safety.SafetyOutputs,
        "eval": evaluate.EvalOutputs,
        "report": report.ReportOutputs,
    }
    recorded = {
        name: kind.from_manifest(json.loads(_manifest_text(snapshot, name))["outputs"]) for name, kind in types.items()
    }
    replays: list[str] = []

    def replay(inputs: Any, ctx: Any) -> StageOutputs:
        name = ctx.folder.name
        replays.append(name)
        for value in vars(inputs).values():
            if isinstance(value, StageOutputs):
                assert value in recorded.values(), f"{name} got outputs no stage recorded: {value}"
        ignore = shutil.ignore_patterns("manifest.json")
        shutil.copytree(snapshot / name, ctx.folder, dirs_exist_ok=True, ignore=ignore)
        return recorded[name]

    for module in (data, sft, merge, dpo, safety, evaluate, report):
        monkeypatch.setattr(module, "run", replay)
    return replays


@pytest.fixture
def replayed(run_folder: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return _replay_stages(run_folder[2], monkeypatch)


@pytest.mark.parametrize("stage", STAGES)
def test_only_reruns_that_stage_alone_and_leaves_the_finished_run_usable(
    run_folder: tuple[Path, Path, Path], stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, run, snapshot = run_folder
    index = STAGES.index(stage)
    later = {s: _manifest_text(run, s) for s in STAGES[index + 1 :]}
    manifests, lines = _in_process(recipe, run, only=stage)
    assert _ran(lines) == [stage]  # for real: nothing before it redone, nothing after it run
    assert list(manifests) == list(STAGES[: index + 1])
    before = json.loads(_manifest_text(snapshot, stage))
    after = json.loads(_manifest_text(run, stage))
    assert after["status"] == "finished" and after["input_hash"] == before["input_hash"]
    assert after["finished"] >= before["finished"]
    assert {s: _manifest_text(run, s) for s in later} == later  # the later stages' records are untouched
    if stage == "merge":
        # The case: a deterministic stage rerun writes the same weights (its card and record carry new
        # times), so nothing after it goes stale and `--only report` still works on the finished run.
        assert after["output_hash"] == before["output_hash"]

    # The run stays usable: a plain run reruns exactly the stages that read outputs which changed (replayed here),
    # and nothing at all when the stage wrote the same files again. (Files carry timestamps, e.g. merge's README.md
    # date, and the report writes the model card into dpo's model folder, so a rerun can change an output hash.)
    from aloekit.recipe import load_recipe
    from aloekit.recipe.run import build_stages

    config, text, _ = load_recipe(recipe, run=run)
    reads = {s.name: s.reads for s in build_stages(config, text, recipe)}
    replays = _replay_stages(snapshot, monkeypatch)
    manifests, lines = _in_process(recipe, run)
    assert all(m["status"] == "finished" for m in manifests.values()) and list(manifests) == list(STAGES)
    changed = {stage} if after["output_hash"] != before["output_hash"] else set()
    stale = []
    for later_stage in STAGES[index + 1 :]:
        if changed & set(reads[later_stage]):
            stale.append(later_stage)
            if (
                manifests[later_stage]["output_hash"]
                != json.loads(_manifest_text(snapshot, later_stage))["output_hash"]
            ):
                changed.add(later_stage)
    assert replays == stale


@pytest.mark.parametrize("stage", STAGES)
def test_from_reruns_that_stage_and_every_later_one_and_skips_the_earlier_ones(
    run_folder: tuple[Path, Path, Path], replayed: list[str], stage: str
) -> None:
    recipe, run, _ = run_folder
    index = STAGES.index(stage)
    earlier = {s: _manifest_text(run, s) for s in STAGES[:index]}
    manifests, lines = _in_process(recipe, run, from_stage=stage)
    assert replayed == _ran(lines) == list(STAGES[index:])
    assert all(f"{s}: finished earlier with the same inputs, skipped" in lines for s in STAGES[:index])
    assert {s: _manifest_text(run, s) for s in earlier} == earlier
    assert all(m["status"] == "finished" for m in manifests.values()) and list(manifests) == list(STAGES)
    replayed.clear()
    _in_process(recipe, run)  # the same outputs again: the next plain run does nothing
    assert replayed == []


def test_on_policy_general_pairs_are_built_by_the_dpo_stage_from_the_merged_models_own_answers(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prefs_general policy of {merged}: the data stage leaves the pairs to the DPO stage, which loads the merged
    model (the model DPO general starts from) as the policy, builds the pairs from its replies and trains on them;
    the report counts those pairs."""
    from aloekit.data import prefs_answers
    from support import ScriptedEngine

    asked: list[str] = []
    real = prefs_answers.policy_answer_pairs

    def answers_of(policy: Any, *args: Any, **kwargs: Any) -> Any:
        # The tiny random model's replies are empty (no pair); the loaded policy is recorded, then scripted.
        asked.append(policy.model_id)
        return real(ScriptedEngine(lambda _: "Answer: Z"), *args, **kwargs)

    monkeypatch.setattr(prefs_answers, "policy_answer_pairs", answers_of)
    medical = (
        'medical: {sources: [{path: "{holdout}/mcq-train.jsonl", format: mcq, cap: 8}], rejected: policy_answer, '
        'policy: {model: "{merged}", backend: hf, batch_size: 4}, max_tokens: 16}'
    )
    recipe = _recipe(tmp_path, tiny_llama, medical)
    run = tmp_path / "run"

    manifests, lines = _in_process(recipe, run)

    assert all(m["status"] == "finished" for m in manifests.values())
    assert asked == [str(run / "merge" / "model")]
    assert not (run / "data" / "prefs_general").exists()
    assert manifests["data"]["outputs"].get("prefs_general") is None
    built = run / "dpo" / "prefs_general"
    assert manifests["dpo"]["outputs"]["prefs_general"] == str(built)
    assert any(line.startswith("dpo: building prefs_general") for line in lines)
    pairs = [json.loads(line) for line in (built / "train.jsonl").read_text().splitlines()]
    assert pairs and all(p["rejected"][-1]["content"] == "Answer: Z" for p in pairs)
    assert f"dataset: {built}\n" in (run / "dpo" / "train" / "config.yaml").read_text()  # DPO general used them
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["data"]["prefs_general"]["folder"] == str(built)
    assert summary["data"]["prefs_general"]["train"] == len(pairs)


def test_a_letter_phase_trains_the_sft_model_on_cloze_keyed_letters_and_the_merge_takes_its_model(
    tmp_path: Path, tiny_llama: Path
) -> None:
    """With data.letters and letters set, the data stage builds the letters mixture (plain letter prompts keyed to
    the scorer's cloze answers, every rotation), the sft stage trains SFT's model on it after SFT, and that model is
    the stage's model: the one merged, and the report's "sft"."""
    recipe = _recipe(tmp_path, tiny_llama, letters=True)
    run = tmp_path / "run"

    manifests, lines = _in_process(recipe, run)

    assert all(m["status"] == "finished" for m in manifests.values())
    letters = run / "data" / "letters"
    assert manifests["data"]["outputs"]["letters"] == str(letters)
    rows = [json.loads(line) for line in (letters / "train.jsonl").read_text().splitlines()]
    assert rows and all(r["plain"] for r in rows)  # "...Answer:" then " B": the evaluation's letter layout
    keys = [r["messages"][-1]["content"].strip() for r in rows]
    assert sorted(keys) == sorted("ABCD" * (len(rows) // 4))  # each question keyed once at every letter
    phase = (run / "sft" / "letters" / "config.yaml").read_text()
    assert f"model: {run / 'sft' / 'train' / 'model'}\n" in phase and f"dataset: {letters}\n" in phase
    assert manifests["sft"]["outputs"]["model"] == str(run / "sft" / "letters" / "model")
    assert str(run / "sft" / "letters" / "model") in (run / "merge" / "merge.yaml").read_text()
    assert any(line == "sft: letter phase" for line in lines)
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["data"]["letters"]["train"] == len(rows)
    assert {"sft", "sft_letters"} <= set(summary["training"])
