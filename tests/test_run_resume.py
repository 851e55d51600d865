"""Specification of ``aloe run``'s resume: killed (SIGKILL, as a crash or a pre-empted job would be) during each
stage in turn on a tiny random model, every rerun skips the stages that finished and continues the killed one;
the last run ends with a report. Also: a second run of a finished recipe does nothing, and a changed section
reruns its stage and the ones after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aloekit.run import STAGES

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


def _recipe(tmp_path: Path, model: Path) -> Path:
    general = _pairs(tmp_path / "general.jsonl", 8, "medicine")
    safety = _pairs(tmp_path / "safety.jsonl", 8, "safety")
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
    pairs: [{{path: "{general}", format: preference}}]
    decontamination: {{benchmarks: [], safety: false}}
  prefs_safety:
    validation: 0.0
    pairs: [{{path: "{safety}", format: preference}}]
    decontamination: {{benchmarks: [], safety: false}}
  cot_db:
    sources: [{{path: "{{holdout}}/mcq-train.jsonl", format: mcq, cap: 24}}]
sft:
  max_length: 256
  per_device_batch_size: 2
  gradient_accumulation: 1
  max_steps: 3
  eval_steps: 1
  save_steps: 1
  validation_fraction: 0.2
  logging: {{steps: 1, tensorboard: false}}
merge:
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
