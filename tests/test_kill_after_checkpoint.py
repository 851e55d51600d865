"""Issue 20, item 8: ``aloe eval``, ``aloe train sft`` and ``aloe run``, killed with SIGKILL *after* their first
checkpoint and rerun, keep the work that had finished (it is not done again) and end exactly where an
uninterrupted run ends.

Each test starts the real command in a fresh interpreter on a tiny random model, waits for its first checkpoint to
appear on disk, kills it, reruns it, and compares the result with the same command run once without a kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import aloe
from test_train_sft import load_weights, tiny_config, write_config, write_dataset

DEMO = Path(__file__).resolve().parents[1] / "src" / "aloekit" / "demo_data"


def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``aloe ARGS`` in a fresh interpreter, its stdout and stderr appended to ``log``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "aloekit.cli", *args], stdout=sink, stderr=sink, env=env)


def kill_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ends first or ``what`` takes minutes."""
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert process.poll() is None, f"the command ended before {what}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {what} within 5 minutes:\n{log.read_text()}"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def cached_keys(cache: Path) -> set[str]:
    """The request keys a request cache holds (a line torn by the kill holds none, as on reload)."""
    keys: set[str] = set()
    for line in cache.read_text().splitlines() if cache.is_file() else []:
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError):
            continue
    return keys


# --- aloe eval --------------------------------------------------------------------------------------------------


def test_a_killed_evaluation_reruns_only_the_questions_its_cache_lacks_and_equals_an_uninterrupted_one(
    tmp_path: Path, tiny_llama: Path
) -> None:
    benchmark = f"file:{DEMO / 'mcq.jsonl'}"

    def command(out: Path) -> list[str]:
        return [
            "eval", "--model", str(tiny_llama), "--benchmarks", benchmark, "--limit", "96",
            "--checkpoint-every", "4", "--batch-size", "4", "--out", str(out), "--json",
        ]  # fmt: skip

    out, log = tmp_path / "killed", tmp_path / "killed.log"
    cache = out / "cache.jsonl"
    # The first checkpoint is the first chunk of 4 questions x 4 letters written to the cache.
    kill_when(start(*command(out), log=log), lambda: len(cached_keys(cache)) >= 16, "evaluation checkpoint", log)
    assert not (out / "results.json").exists(), "the evaluation finished before it was killed"
    # Questions are written in order, four requests each, so the complete ones are the whole fours in the cache.
    kept = len(cached_keys(cache)) // 4
    assert 4 <= kept < 96

    rerun = aloe(*command(out))
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads(rerun.stdout)["benchmarks"][benchmark]
    assert (resumed["from_cache"], resumed["computed"]) == (kept, 96 - kept)  # nothing finished was scored again

    fresh = aloe(*command(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr
    once = json.loads(fresh.stdout)["benchmarks"][benchmark]
    assert once["computed"] == 96
    for key in ("n", "acc", "acc_norm", "predicted", "tokens"):
        assert resumed[key] == once[key], key
    killed_samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    fresh_samples = [json.loads(line) for line in (tmp_path / "fresh" / "samples.jsonl").read_text().splitlines()]
    assert [s["id"] for s in killed_samples] == [s["id"] for s in fresh_samples]
    for a, b in zip(killed_samples, fresh_samples, strict=True):
        assert (a["pred"], a["pred_norm"]) == (b["pred"], b["pred_norm"])
        # Chunks batch differently after a resume: the same sums, up to float rounding in padded batches.
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)


# --- aloe train sft ---------------------------------------------------------------------------------------------


def test_a_killed_sft_keeps_its_checkpoints_resumes_from_the_last_and_equals_an_uninterrupted_run(
    tmp_path: Path, tiny_llama: Path
) -> None:
    from aloekit.train.sft import CHECKPOINTS, SFTRunConfig, complete_checkpoints, train_sft

    data = write_dataset(tmp_path / "data")
    reference = tiny_config(tiny_llama, data, tmp_path / "fresh", max_steps=6)
    expected = train_sft(SFTRunConfig.model_validate(reference))
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    config = write_config(tmp_path / "sft.yaml", {**reference, "out": str(out)})
    checkpoints = out / CHECKPOINTS

    kill_when(start("train", "sft", str(config), "--quiet", log=log), lambda: bool(complete_checkpoints(checkpoints)),
              "SFT checkpoint", log)  # fmt: skip
    assert not (out / "model").exists(), "the training finished before it was killed"
    kept = complete_checkpoints(checkpoints)[-1]
    kept_weights = {p.name: p.stat().st_mtime_ns for p in kept.iterdir()}

    # The same command again does not start over on top of the checkpoints: it says how to continue them...
    again = aloe("train", "sft", str(config), "--quiet")
    assert again.returncode == 2 and "pass --resume" in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in kept.iterdir()} == kept_weights
    # ...and with --resume it continues from the last checkpoint the kill left, not from step 0.
    resumed = aloe("train", "sft", str(config), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == kept.name
    assert metrics["steps"] == expected["steps"] == 6

    weights, reference_weights = load_weights(out / "model"), load_weights(Path(expected["model"]))
    assert weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert (weights[name] - tensor).abs().max() <= 1e-5, name
    assert metrics["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    # Training moved the weights, so the comparison is not between two untouched copies.
    base = load_weights(tiny_llama)
    assert max((weights[k] - base[k]).abs().max().item() for k in base if k in weights) > 1e-4


# --- aloe run ---------------------------------------------------------------------------------------------------


def tiny_recipe(tmp_path: Path, model: Path) -> Path:
    """Every stage of a recipe on the tiny model, each cut to a few steps or questions: seconds per stage."""
    for topic in ("general", "safety"):
        rows = [
            {"id": f"{topic}-{i}", "prompt": f"Question {i} about {topic}?", "chosen": f"A careful answer {i}: see "
             "a clinician.", "rejected": f"A careless answer {i}."}
            for i in range(4)
        ]  # fmt: skip
        (tmp_path / f"{topic}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    no_decontamination = "decontamination: {benchmarks: [], safety: false}"
    text = f"""
name: tiny
seed: 0
models: {{base: "{model}", instruct: "{model}"}}
engine: {{backend: hf, batch_size: 4}}
data:
  holdout:
    - {{name: mcq, path: "{DEMO}/mcq.jsonl", fraction: 0.1}}
    - {{name: harmful, path: "{DEMO}/harmful.jsonl", fraction: 0.1}}
  mixture:
    validation: 0.2
    sources: [{{path: "{{holdout}}/mcq-train.jsonl", format: mcq, cap: 12}}]
    {no_decontamination}
  prefs_general: {{validation: 0.0, pairs: [{{path: "{tmp_path}/general.jsonl", format: preference}}],
                  {no_decontamination}}}
  prefs_safety: {{validation: 0.0, pairs: [{{path: "{tmp_path}/safety.jsonl", format: preference}}],
                 {no_decontamination}}}
sft:
  max_length: 128
  per_device_batch_size: 2
  max_steps: 6
  eval_steps: 3
  save_steps: 1
  validation_fraction: 0.2
  logging: {{steps: 1, tensorboard: false}}
merge:
  merge_method: linear
  models: [{{model: "{{sft}}", parameters: {{weight: 0.5}}}}, {{model: "{{instruct}}", parameters: {{weight: 0.5}}}}]
  dtype: float32
dpo:
  settings: {{per_device_batch_size: 2, save_steps: 1, logging: {{steps: 1, tensorboard: false}}}}
  general: {{max_steps: 1, max_length: 128}}
  safety: {{max_steps: 1, max_length: 128}}
eval:
  benchmarks: ["file:{{holdout}}/mcq-eval.jsonl"]
  limit: 4
  medprompt: {{enabled: false}}
safety:
  suites: ["file:{{holdout}}/harmful-eval.jsonl"]
  styles: [plain]
  limit: 2
  max_tokens: 4
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def stage_manifest(run: Path, stage: str) -> dict:
    path = run / stage / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_killed_recipe_run_skips_finished_stages_resumes_sft_from_its_checkpoint_and_equals_an_uninterrupted_run(
    tmp_path: Path, tiny_llama: Path
) -> None:
    from aloekit.recipe.run import STAGES
    from aloekit.train.sft import CHECKPOINTS, complete_checkpoints

    recipe = tiny_recipe(tmp_path, tiny_llama)
    run, log = tmp_path / "killed", tmp_path / "killed.log"
    checkpoints = run / "sft" / "train" / CHECKPOINTS

    # The run's first checkpoint: the data stage has finished and SFT has saved its first step.
    kill_when(start("run", str(recipe), "--out", str(run), log=log), lambda: bool(complete_checkpoints(checkpoints)),
              "SFT checkpoint inside the run", log)  # fmt: skip
    assert stage_manifest(run, "sft")["status"] == "running", "SFT finished before the run was killed"
    data_finished = stage_manifest(run, "data")["finished"]
    kept = complete_checkpoints(checkpoints)[-1].name

    rerun = aloe("run", str(recipe), "--out", str(run), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "data: finished earlier with the same inputs, skipped" in rerun.stderr
    assert "sft: resuming its partial work" in rerun.stderr
    assert stage_manifest(run, "data")["finished"] == data_finished  # not rebuilt
    assert json.loads((run / "sft" / "train" / "metrics.json").read_text())["resumed_from"] == kept
    assert all(stage_manifest(run, s).get("status") == "finished" for s in STAGES)

    fresh = tmp_path / "fresh"
    once = aloe("run", str(recipe), "--out", str(fresh), timeout=600)
    assert once.returncode == 0, once.stderr
    for model in ("sft/train/model", "merge/model", "dpo/train/general/model", "dpo/train/safety/model"):
        resumed, reference = load_weights(run / model), load_weights(fresh / model)
        assert resumed.keys() == reference.keys()
        for name, tensor in reference.items():
            assert (resumed[name] - tensor).abs().max() <= 1e-5, f"{model}: {name}"
    for model in ("base", "sft", "merged", "dpo_general", "dpo_safety"):
        a, b = jsonl(run / "eval" / model / "samples.jsonl"), jsonl(fresh / "eval" / model / "samples.jsonl")
        assert [(s["id"], s["pred"], s["pred_norm"]) for s in a] == [(s["id"], s["pred"], s["pred_norm"]) for s in b]
        for x, y in zip(a, b, strict=True):
            assert x["loglikelihoods"] == pytest.approx(y["loglikelihoods"], abs=1e-4), model
    for model in ("merged", "dpo_safety"):
        a, b = jsonl(run / "safety" / model / "samples.jsonl"), jsonl(fresh / "safety" / model / "samples.jsonl")
        assert [(s["id"], s["reply"], s["verdict"]) for s in a] == [(s["id"], s["reply"], s["verdict"]) for s in b]
    assert (run / "report" / "report.html").is_file()
