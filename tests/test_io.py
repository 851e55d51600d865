"""aloekit.io: atomic writes leave old or new, never half; results follow the user's umask; JSON-lines errors name
the file and line; a U+2028 inside a JSON string is not a line break (issue 19 item 6)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aloekit import io
from aloekit.errors import MalformedRow, UserError


class WriterFailed(Exception):
    pass


def test_a_failed_text_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    io.atomic_write_text(path, "old\n")

    def records() -> Iterator[dict[str, int]]:
        yield {"a": 1}
        raise WriterFailed

    with pytest.raises(WriterFailed):
        io.write_jsonl(path, records())

    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_writer_that_fails_halfway_through_a_named_temporary_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.safetensors"
    with pytest.raises(WriterFailed), io.atomic_path(path) as tmp:
        tmp.write_bytes(b"half a file")
        raise WriterFailed

    assert list(tmp_path.iterdir()) == []


def test_a_failed_folder_write_keeps_the_old_folder_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    with io.atomic_folder(target) as tmp:
        (tmp / "train.jsonl").write_text("old\n")

    with pytest.raises(WriterFailed), io.atomic_folder(target) as tmp:
        (tmp / "train.jsonl").write_text("half")
        raise WriterFailed

    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    assert (target / "train.jsonl").read_text() == "old\n"


def test_a_finished_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with io.atomic_folder(target) as tmp:
        (tmp / "stale.bin").write_text("old")
    with io.atomic_folder(target, fsync=True) as tmp:
        (tmp / "model.safetensors").write_text("new")

    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(("mask", "file", "folder"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_files_and_folders_get_the_modes_the_umask_gives(tmp_path: Path, mask: int, file: int, folder: int) -> None:
    before = os.umask(mask)
    try:
        io.atomic_write_text(tmp_path / "a.txt", "x")
        io.write_json(tmp_path / "b.json", {})
        with io.atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"x")
        with io.atomic_folder(tmp_path / "d") as tmp:
            (tmp / "e.json").write_text("{}")
    finally:
        os.umask(before)

    for name in ("a.txt", "b.json", "c.bin", "d/e.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file, name
    assert (tmp_path / "d").stat().st_mode & 0o777 == folder


def test_json_and_jsonl_writes_are_byte_for_byte_what_the_callers_wrote_before(tmp_path: Path) -> None:
    value = {"name": "Pérez", "n": 1}
    io.write_json(tmp_path / "a.json", value, ensure_ascii=False)
    io.write_json(tmp_path / "b.json", value)
    io.write_jsonl(tmp_path / "c.jsonl", [value, [1]])

    assert (tmp_path / "a.json").read_text(encoding="utf-8") == json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    assert (tmp_path / "b.json").read_text(encoding="utf-8") == json.dumps(value, indent=2) + "\n"
    assert (tmp_path / "c.jsonl").read_text(encoding="utf-8") == '{"name": "Pérez", "n": 1}\n[1]\n'


def test_an_appended_log_starts_a_fresh_line_after_a_torn_one(tmp_path: Path) -> None:
    log = tmp_path / "cache.jsonl"
    io.append_jsonl(log, [{"a": 1}])
    with log.open("a") as f:
        f.write('{"a": 2, "tor')  # a kill mid-write
    io.append_jsonl(log, [{"a": 3}])

    assert log.read_text().split("\n") == ['{"a": 1}', '{"a": 2, "tor', '{"a": 3}', ""]


def test_u2028_inside_a_json_string_stays_one_line(tmp_path: Path) -> None:
    rows = [{"question": "first\u2028second\u2029third\x85fourth"}, {"question": "next"}]
    path = tmp_path / "items.jsonl"
    io.write_jsonl(path, rows)

    assert [row for _, row in io.read_jsonl(path)] == rows
    assert [where for where, _ in io.read_jsonl(path)] == [f"{path}:1", f"{path}:2"]
    assert [n for n, _ in io.iter_lines(path)] == [1, 2]
    assert io.json_lines(path.read_text(encoding="utf-8"))[:2] == [json.dumps(r, ensure_ascii=False) for r in rows]


def test_a_windows_line_ending_and_a_lone_cr_inside_a_line_are_read_as_json(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a":\r 1}\r\n\r\n{"a": 2}\r\n')  # \r is JSON whitespace: it does not end a line

    assert list(io.read_jsonl(path)) == [(f"{path}:1", {"a": 1}), (f"{path}:3", {"a": 2})]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{"a": 1}\n\n{"a": \n', 3, "not valid JSON"),
        ('{"a": 1}\n[1, 2]\n', 2, "expected a JSON object per line, got list"),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)

    with pytest.raises(MalformedRow) as error:
        list(io.read_jsonl(path, fix="rebuild it"))

    assert error.value.message.startswith(f"{path}:{line}: {problem}")
    assert "\n" not in error.value.message


def test_a_jsonl_error_ends_with_the_callers_fix(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text("nope\n")

    with pytest.raises(UserError, match=r"samples.jsonl:1: not valid JSON \(.+\); rerun the evaluation$"):
        list(io.read_jsonl(path, fix="rerun the evaluation"))


def test_a_binary_jsonl_file_is_one_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')

    with pytest.raises(UserError, match=r"rows.jsonl:2: not UTF-8 text"):
        list(io.read_jsonl(path))


def test_a_missing_jsonl_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"file not found: .*absent\.jsonl"):
        list(io.read_jsonl(tmp_path / "absent.jsonl"))


def test_io_imports_nothing_from_aloekit_but_errors() -> None:
    source = Path(io.__file__).read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("from aloekit", "import aloekit"))]

    assert imports == ["from aloekit.errors import MalformedRow, UserError"]
