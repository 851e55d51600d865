"""Reading and writing files: atomic writes of files and folders, JSON and JSON lines, users' text files.

Every result file is written to a temporary sibling and renamed into place, so a reader (or a resumed run) sees
the old content or the new, never half a file that looks done. A finished file or folder gets the modes the user's
umask gives new files (0644 and 0755 under the usual 022), not the private 0600/0700 of ``mkstemp``/``mkdtemp``.

Reading users' files ends in one :class:`UserError` naming the file and line: a binary or non-UTF-8 file would
otherwise be a bare ``UnicodeDecodeError`` naming neither. JSON lines are split at ``\\n`` only: ``str.splitlines()``
also splits at U+2028/U+2029 and other separators that JSON allows unescaped inside strings (and that
``ensure_ascii=False`` writes raw), which would cut a valid line in two.

This module imports nothing from aloekit but :mod:`aloekit.errors`, so any module can use it without a cycle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from aloekit.errors import MalformedRow, UserError

# --- the user's umask -------------------------------------------------------------------------------------------


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only read by setting)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode the user's umask gives a new file (0644 under the usual 022)."""
    return 0o666 & ~umask()


def make_readable(folder: Path) -> None:
    """Give a finished folder (a shared cache, a merge output, a dataset) the modes the user's umask gives new
    folders and files: 0755 and 0644 under the usual 022, so other users of a shared folder can read it.

    ``mkdtemp`` creates the folder with mode 0700 and safetensors writes its files with mode 0600, so without
    this only the user who wrote it could read it.
    """
    mask = umask()
    folder.chmod(0o777 & ~mask)
    for item in folder.rglob("*"):
        if not item.is_symlink():
            item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


# --- atomic files -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def temporary_sibling(path: Path) -> Iterator[Path]:
    """A fresh, empty temporary file next to ``path`` (same folder, so a rename onto ``path`` is atomic), removed
    when the block ends, however it ends. Hidden, so a killed process leaves nothing that looks like a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling for a writer that needs a file name (safetensors, a GGUF writer): when the block
    succeeds it gets the user's umask mode and is renamed to ``path``; when it fails, ``path`` is untouched."""
    with temporary_sibling(path) as tmp:
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp's file is private (0600): a result gets the user's umask
        os.replace(tmp, path)


def atomic_write_text(path: Path, text: str, *, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling and a rename: readers see old or new, never
    half. ``fsync`` also flushes it to disk before the rename, for a file that must survive a power cut."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_json(
    path: Path, value: Any, *, ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None
) -> None:
    """``value`` as indented JSON (two spaces) with a final newline, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=ensure_ascii, default=default) + "\n")


def jsonl_text(records: Iterable[Any]) -> str:
    """JSON-lines text: one compact JSON value per line, non-ASCII kept as is (readable, and smaller)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    """``records`` as JSON lines, written atomically."""
    atomic_write_text(path, jsonl_text(records))


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Append ``records`` to the JSON-lines log ``path``, flushed and fsynced, so a run killed at any moment keeps
    every batch appended before it. A log whose last write was torn by a kill gets a fresh line first, so the
    fragment stays a line of its own that readers skip or cut, instead of corrupting the next record."""
    text = jsonl_text(records)
    if not text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        if f.tell() > 0 and not _ends_with_newline(path):
            f.write("\n")
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# --- atomic folders ---------------------------------------------------------------------------------------------


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk; a no-op where the platform cannot."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_folder(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target`` (a sibling), replacing whatever is there. The old folder is
    moved aside first, so a crash between the two renames leaves a complete folder, never a half-written one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
    os.replace(target, aside / "previous")
    os.replace(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(target: Path, *, prefix: str | None = None, fsync: bool = False) -> Iterator[Path]:
    """A temporary sibling folder to fill; when the block succeeds it gets the user's umask modes and replaces
    ``target`` (:func:`replace_folder`), and when it fails it is removed, so ``target`` is never half-written.

    ``prefix`` names the temporary folder (hidden ``.<name>.…tmp`` by default) for callers that recognise their
    own leftovers; ``fsync`` flushes the folder's entries, and then its parent's, to disk around the rename.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if prefix is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
        make_readable(tmp)  # mkdtemp's folder is private (0700): the user's umask instead
        if fsync:
            fsync_dir(tmp)
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fsync:
        fsync_dir(target.parent)


# --- reading users' text files ----------------------------------------------------------------------------------


def undecodable(path: Path, encoding: str = "UTF-8") -> UserError:
    """The one-line error for a file that is not ``encoding`` text, naming the first line that is not."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return UserError(
                    f"{path}:{number}: not {encoding} text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    f"a binary file, or text in another encoding: save it as {encoding}"
                )
    return UserError(f"{path}: not {encoding} text; save it as {encoding}")


class TextFile:
    """A text file open for reading whose decoding errors are :class:`UserError` naming the file and line."""

    def __init__(self, path: Path, *, encoding: str = "utf-8-sig", newline: str | None = "") -> None:
        self.path = path
        # utf-8-sig: many upstream CSV/JSON files start with a byte-order mark; it reads plain UTF-8 too.
        self._handle = path.open(encoding=encoding, newline=newline)

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._handle.close()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._handle)
        except UnicodeDecodeError as e:
            raise undecodable(self.path) from e

    def read(self, size: int = -1) -> str:
        try:
            return self._handle.read(size)
        except UnicodeDecodeError as e:
            raise undecodable(self.path) from e


def read_text(path: Path) -> str:
    """The whole text of ``path`` (UTF-8, a leading byte-order mark dropped, newlines kept as written)."""
    with TextFile(path) as f:
        return f.read()


def json_lines(text: str) -> list[str]:
    """The lines of JSON-lines text: split at ``\\n`` only, a Windows ``\\r`` before it dropped.

    ``str.splitlines()`` also splits at U+2028, U+2029, U+0085, \\v, \\f and \\x1c-\\x1e, which JSON allows raw
    inside strings, so it would cut a valid line in two.
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a JSON-lines file, read as it goes: split at ``\\n`` only (as :func:`json_lines`),
    without the line ending; blank lines included, so the numbers are the editor's."""
    # newline="\n": the file splits at "\n" alone; a lone "\r" is JSON whitespace and must not end a line.
    with TextFile(path, newline="\n") as f:
        for number, line in enumerate(f, start=1):
            yield number, line.removesuffix("\n").removesuffix("\r")


def read_jsonl(path: Path, *, fix: str = "each line must be one JSON object") -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, row) for each non-blank line of a JSON-lines file whose lines are JSON objects.

    A missing file, a line that is not JSON or not an object is one :class:`MalformedRow` (a :class:`UserError`)
    naming the file and line; ``fix`` ends the message of a line that is not JSON.
    """
    if not path.is_file():
        raise UserError(f"file not found: {path}; check the path (or --data-dir)")
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise MalformedRow("not valid JSON", f"{where}: not valid JSON ({_reason(e)}); {fix}") from e
        if not isinstance(row, dict):
            raise MalformedRow(
                "not a JSON object", f"{where}: expected a JSON object per line, got {type(row).__name__}"
            )
        yield where, row


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A JSON file that must hold one object (config.json, tokenizer_config.json...), or one UserError naming the
    file, what is wrong with it and ``fix``."""
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); {fix}") from e
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object, got a JSON {_json_type(value)}; {fix}")
    return value


def _reason(error: ValueError) -> str:
    return error.msg if isinstance(error, json.JSONDecodeError) else str(error)


def _json_type(value: object) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
