"""Issue 20: bad user files are one line naming the file and line; empty results are errors; a failed run leaves
nothing that blocks the next one; files are written with the user's umask."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from aloekit import io, models
from aloekit.errors import UserError
from aloekit.io import TextFile, json_lines, read_json_object
from support import aloe, assert_error_after_progress, assert_one_line_error

NO_EVAL = "decontamination: {benchmarks: [], safety: false}\n"


def model_folder(tmp_path: Path, weights: bytes, config: str = '{"architectures": ["LlamaForCausalLM"]}') -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


# --- readers of user files --------------------------------------------------------------------------------------


def test_a_non_utf8_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": "caf\xe9"}\n')

    expected = r"rows.jsonl:3: not UTF-8 text \(byte 0xe9 at column 11\)"
    with pytest.raises(UserError, match=expected), TextFile(path) as f:
        list(f)


def test_json_lines_split_at_newlines_only_not_at_unicode_separators() -> None:
    text = json.dumps({"q": "a\u2028b\u2029c\x85d"}, ensure_ascii=False) + "\r\n" + json.dumps({"q": 2})

    assert [json.loads(line) for line in json_lines(text)] == [{"q": "a\u2028b\u2029c\x85d"}, {"q": 2}]


def test_a_json_file_that_must_be_an_object_names_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")

    with pytest.raises(UserError, match=r"config.json: expected a JSON object, got a JSON list; fix it"):
        read_json_object(path, "fix it")


@pytest.mark.parametrize("data", [b"\xff\xfe\x00binary", b'{"question": "caf\xe9"}\n'])
def test_eval_on_a_binary_or_non_utf8_benchmark_file_is_one_line_naming_it(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_bytes(data)

    result = aloe("eval", "--benchmarks", f"file:{path}", "--out", str(tmp_path / "out"))

    assert_one_line_error(result, f"{path}:1", "not UTF-8")
    assert not (tmp_path / "out").exists()


def test_data_build_on_a_binary_source_is_one_line_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_bytes(bytes(range(128, 256)) * 8)
    mix = tmp_path / "mix.yaml"
    mix.write_text(NO_EVAL + f"sources: [{{format: alpaca, path: '{source}', name: rows}}]\n")

    result = aloe("data", "build", str(mix), "--out", str(tmp_path / "out"))

    assert_error_after_progress(result, f"{source}:1", "not UTF-8")
    assert not (tmp_path / "out").exists()


def test_a_safetensors_header_length_past_the_end_of_the_file_is_an_error_not_a_memory_error(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, struct.pack("<Q", 2**62) + b"{}")

    with pytest.raises(UserError, match=r"header length .* but the file has 2 after it"):
        models.safetensors_header(folder / "model.safetensors")
    assert_one_line_error(aloe("models", "info", str(folder)), "model.safetensors", "truncated or not safetensors")


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 9) + b"not json!", "not valid UTF-8 JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 14) + b'{"w": {"a":1}}', "no valid dtype and shape"),
    ],
)
def test_a_malformed_safetensors_header_is_one_line(tmp_path: Path, weights: bytes, problem: str) -> None:
    folder = model_folder(tmp_path, weights)

    assert_one_line_error(aloe("models", "info", str(folder)), "model.safetensors", problem)


@pytest.mark.parametrize(("config", "problem"), [("[1]", "got a JSON list"), ('{"a": ', "not valid JSON")])
def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path: Path, config: str, problem: str) -> None:
    folder = model_folder(tmp_path, struct.pack("<Q", 2) + b"{}", config=config)

    assert_one_line_error(aloe("models", "info", str(folder)), "config.json", problem)


# --- run.split_holdout ------------------------------------------------------------------------------------------


def test_split_holdout_keeps_a_json_line_holding_a_unicode_line_separator_whole(tmp_path: Path) -> None:
    from aloekit.recipe.holdout import split_holdout

    rows = [{"id": i, "subject": "s", "question": f"line one\u2028line two {i}\u2029end"} for i in range(4)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    train, held = split_holdout(path, 0.25, seed=0)

    assert sorted(json.loads(line)["id"] for line in train + held) == [0, 1, 2, 3]
    assert len(held) == 1


# --- empty results are errors -----------------------------------------------------------------------------------


def test_a_data_build_that_keeps_no_row_says_why_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text('[1, 2]\n{"instruction": "no output"}\n{"instruction": "again no output"}\n')
    mix = tmp_path / "mix.yaml"
    mix.write_text(NO_EVAL + f"sources: [{{format: alpaca, path: '{source}', name: rows}}]\n")

    result = aloe("data", "build", str(mix), "--out", str(tmp_path / "out"))

    last = assert_error_after_progress(result, "no training rows", "3 rows dropped", "2 empty answer", "1 not a JSON")
    assert f"{source}:2" in last  # the first row of the commonest reason
    assert not (tmp_path / "out").exists()


def test_a_data_build_over_an_empty_file_says_the_inputs_hold_no_rows(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("\n")
    mix = tmp_path / "mix.yaml"
    mix.write_text(NO_EVAL + f"sources: [{{format: alpaca, path: '{source}', name: rows}}]\n")

    assert_error_after_progress(aloe("data", "build", str(mix), "--out", str(tmp_path / "o")), "hold no rows")
    assert not (tmp_path / "o").exists()


def test_a_preference_build_with_no_pair_says_why_and_writes_nothing(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Is this fine?", "chosen": "", "rejected": "No."}) + "\n[]\n")
    config = tmp_path / "prefs.yaml"
    config.write_text(NO_EVAL + f"validation: 0\npairs: [{{format: preference, path: '{pairs}', name: mine}}]\n")

    result = aloe("data", "prefs", str(config), "--out", str(tmp_path / "p"))

    assert_error_after_progress(result, "no training pairs", "2 rows dropped")
    assert not (tmp_path / "p").exists()


def test_an_evaluation_of_an_empty_benchmark_file_is_an_error_before_any_model(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n\n")

    result = aloe("eval", "--benchmarks", f"file:{path}", "--out", str(tmp_path / "out"))

    assert_one_line_error(result, "no questions")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suites", ["file:{empty}", ","])
def test_a_safety_run_with_no_prompt_is_an_error_before_any_model(tmp_path: Path, suites: str) -> None:
    empty = tmp_path / "prompts.jsonl"
    empty.write_text("")

    result = aloe("safety", "--suites", suites.format(empty=empty), "--out", str(tmp_path / "out"))

    assert_one_line_error(result, "--suites" if suites == "," else "holds no prompts")
    assert not (tmp_path / "out").exists()


# --- a failed or killed training run does not block the next one ---------------------------------------------------


def dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def stale_run(out: Path, **manifest: object) -> Path:
    import socket

    out.mkdir(parents=True)
    (out / "config.yaml").write_text("model: m\n")
    record = {"status": "running", "host": socket.gethostname(), **manifest}
    (out / "manifest.json").write_text(json.dumps(record))
    return out


def sft_config(tmp_path: Path, model: Path, **overrides: object) -> object:
    from aloekit.train.sft import SFTRunConfig

    data = tmp_path / "chats.jsonl"
    question = "My child has had a fever for two days and is drinking less than usual; " * 3 + "what should I do?"
    chat = [{"role": "user", "content": question}, {"role": "assistant", "content": "See a doctor today."}]
    data.write_text("".join(json.dumps({"id": f"c{i}", "messages": chat}) + "\n" for i in range(4)))
    settings = {"model": str(model), "dataset": str(data), "out": str(tmp_path / "out"), "max_steps": 1}
    return SFTRunConfig.model_validate({**settings, **overrides})


def test_sft_that_failed_on_a_bad_config_is_taken_over_by_the_rerun(tmp_path: Path, tiny_llama: Path) -> None:
    from aloekit.train.sft import train_sft

    # max_length 16 cuts every conversation inside its question: no trained token is left, and the run fails
    # after it wrote its records.
    bad = sft_config(tmp_path, tiny_llama, max_length=16)
    with pytest.raises(UserError, match="no training conversation"):
        train_sft(bad)  # type: ignore[arg-type]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "no training conversation" in manifest["error"]

    said: list[str] = []
    with pytest.raises(UserError, match="no training conversation"):  # not "already holds a run"
        train_sft(bad, log=said.append)  # type: ignore[arg-type]
    assert said[0].startswith(f"taking over {tmp_path / 'out'}: its earlier run stopped before its first checkpoint")


def test_sft_takes_over_a_running_manifest_whose_process_is_gone_but_not_a_live_one(
    tmp_path: Path, tiny_llama: Path
) -> None:
    import os

    from aloekit.train.sft import _prepare_out

    config = sft_config(tmp_path, tiny_llama)
    out = stale_run(tmp_path / "out", pid=dead_pid())
    resume, message = _prepare_out(config, resume=True)  # type: ignore[arg-type]
    assert resume is False
    assert message is not None and "is gone" in message

    (out / "manifest.json").write_text(json.dumps({**json.loads((out / "manifest.json").read_text()), "pid": 1}))
    if os.getpid() != 1:
        with pytest.raises(UserError, match=r"in use by a running training \(pid 1\)"):
            _prepare_out(config, resume=False)  # type: ignore[arg-type]


def test_sft_with_a_checkpoint_is_resumed_not_taken_over(tmp_path: Path, tiny_llama: Path) -> None:
    from aloekit.train.sft import _prepare_out

    config = sft_config(tmp_path, tiny_llama)
    out = stale_run(tmp_path / "out", pid=dead_pid())
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")

    with pytest.raises(UserError, match="pass --resume"):
        _prepare_out(config, resume=False)  # type: ignore[arg-type]


def test_dpo_that_failed_is_taken_over_by_the_rerun_unless_a_stage_saved_a_checkpoint(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aloekit.train import dpo

    pairs = tmp_path / "pairs.jsonl"
    turn = {"role": "user", "content": "Is it safe?"}
    row = {"prompt": [turn], "chosen": [{"role": "assistant", "content": "Ask a doctor."}]}
    rows = [{**row, "id": f"p{i}", "rejected": [{"role": "assistant", "content": f"No {i}."}]} for i in range(4)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = dpo.DPORunConfig.model_validate(
        {"model": str(tiny_llama), "out": str(tmp_path / "out"), "stages": [{"name": "s", "dataset": str(pairs)}]}
    )

    def bad_stage(*args: object, **kwargs: object) -> object:
        raise ValueError("Target modules {'q_prj'} not found in the base model")

    monkeypatch.setattr(dpo, "_run_stage", bad_stage)
    with pytest.raises(ValueError, match="q_prj"):
        dpo.train_dpo(config)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "q_prj" in manifest["error"]

    with pytest.raises(ValueError, match="q_prj"):  # not "already holds files"
        dpo.train_dpo(config)
    assert "taking over" in capsys.readouterr().err

    (tmp_path / "out" / "s" / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(UserError, match="--resume"):
        dpo.train_dpo(config)


@pytest.mark.parametrize("start", [b"\xa7\xf6\xe1i", b"GGUF\x03\x00\x00\x00"])
def test_a_rejected_gguf_leaves_no_lock_or_temporary_folder(tmp_path: Path, start: bytes) -> None:
    # Random bytes fail the magic check before any lock; a GGUF magic over garbage fails inside the conversion,
    # which holds the lock: both must leave the cache as they found it.
    path = tmp_path / "broken.gguf"
    path.write_bytes(start + bytes(range(256)) * 8)
    home = tmp_path / "aloe-home"

    result = aloe("models", "info", str(path), env={"ALOE_HOME": str(home)})

    assert_one_line_error(result, "broken.gguf")
    left = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.name != "hashes.json"]
    assert left in ([], ["models"])  # at most the cache's (empty) folder: no lock, no half-converted model


def test_the_gguf_lock_is_exclusive_and_its_file_is_removed_on_release(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with models.file_lock(lock):
        assert lock.exists()
    assert not lock.exists()
    with pytest.raises(RuntimeError), models.file_lock(lock):
        raise RuntimeError("conversion failed")
    assert not lock.exists()


# --- --dry-run and the server check what they can before any model -------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ('benchmarks: ["file:{holdout}/mcq-eval.jsonl"]', "benchmarks: [medqa_typo]", ["medqa_typo", "benchmarks"]),
        ('suites: ["file:{holdout}/harmful-eval.jsonl"', 'suites: ["advbnech"', ["advbnech", "safety.suites"]),
        ("file:{holdout}/mcq-eval.jsonl", "file:/no/such/mcq.jsonl", ["eval.benchmarks[0]", "/no/such/mcq.jsonl"]),
        ("{holdout}/benign-train.jsonl", "/no/such/benign.jsonl", ["data.mixture.sources[1].path", "not found"]),
    ],
)
def test_a_dry_run_refuses_an_unknown_benchmark_or_suite_or_a_missing_file(
    tmp_path: Path, old: str, new: str, names: list[str]
) -> None:
    text = (ROOT / "recipes" / "demo.yaml").read_text()
    assert old in text
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(text.replace(old, new))

    result = aloe("run", str(recipe), "--dry-run", "--out", str(tmp_path / "run"))

    assert_one_line_error(result, *names)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--port", "70000"], ["--port", "65535"]),
        (["--port", "0"], ["--port"]),
        (["--max-queue", "0"], ["--max-queue"]),
        (["--max-concurrency", "-1"], ["--max-concurrency"]),
        (["--backend", "nosuch"], ["--backend nosuch", "hf, vllm, llamacpp, openai"]),
        (["--host", "nosuch.invalid"], ["cannot listen on nosuch.invalid:8000"]),
    ],
)
def test_serve_validates_its_options_before_loading_the_model(args: list[str], names: list[str]) -> None:
    # The model does not exist: an option checked only after loading would fail on the model instead.
    assert_one_line_error(aloe("serve", "--model", "/no/such/model", *args), *names)


def test_serve_refuses_a_port_in_use_before_loading_the_model() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = aloe("serve", "--model", "/no/such/model", "--port", str(port))

    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")


# --- files are written with the user's umask ---------------------------------------------------------------------


def test_atomic_writes_follow_the_umask_not_mkstemps_private_mode(tmp_path: Path) -> None:
    import os

    before = os.umask(0o022)
    try:
        io.atomic_write_text(tmp_path / "results.json", "{}")
        assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        io.atomic_write_text(tmp_path / "private.json", "{}")
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(before)


def test_a_built_dataset_folder_and_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    from aloekit.data import dataset

    before = os.umask(0o022)
    try:
        dataset.publish(tmp_path / "ds", {"train.jsonl": [{"a": 1}], "stats.json": "{}"}, overwrite=False)
    finally:
        os.umask(before)

    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "ds").iterdir()} == {
        "train.jsonl": 0o644,
        "stats.json": 0o644,
    }
