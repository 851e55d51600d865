"""Issue 20: bad user files are one line naming the file and line; empty results are errors; a failed run leaves
nothing that blocks the next one; files are written with the user's umask."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from aloekit import models
from aloekit.errors import UserError
from aloekit.textio import TextFile, json_lines, read_json_object
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
    from aloekit.run import split_holdout

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
