"""Reading users' text files (JSON lines, JSON, CSV) so that a bad file is one line naming the file and line.

A binary or non-UTF-8 file otherwise ends in a bare ``UnicodeDecodeError`` that names neither; JSON lines split
with ``str.splitlines()`` break at U+2028/U+2029 and other separators that JSON allows unescaped inside strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from aloekit.errors import UserError


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


def _json_type(value: object) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
