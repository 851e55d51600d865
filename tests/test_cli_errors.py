"""Specification of the CLI's one error path (``aloekit.cli.main``): usage errors, user errors and bugs each end in
one line on stderr, with exit 2 for what the user can fix and a ``--debug`` hint for the rest."""

from __future__ import annotations

import pytest

from aloekit import cli
from support import aloe, assert_one_line_error


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["eval", "--benchmarks", "pubmedqa"], ["--out", "aloe eval --help"]),
        (["eval", "--benchmarks", "pubmedqa", "--out", "o", "--limit", "abc"], ["--limit", "integer"]),
        (["serve", "--port", "notaport"], ["--port", "aloe serve --help"]),
        (["nosuch"], ["nosuch", "aloe --help"]),
        (["data", "nosuch"], ["nosuch", "aloe data --help"]),
        (["eval", "--bogus"], ["--bogus"]),
        (["models", "info"], ["ref", "aloe models info --help"]),
    ],
)
def test_usage_errors_are_one_line_naming_the_fault_and_the_help_with_exit_2(args: list[str], names: list[str]) -> None:
    # typer 0.29 raises its vendored click exceptions (typer._click), which `except click.ClickException` misses.
    assert_one_line_error(aloe(*args), *names)


def test_an_unexpected_exception_is_one_line_with_a_debug_hint_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aloekit import models

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(models, "resolve", broken)

    code = cli.main(["models", "info", "anything"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [f"error: unexpected RuntimeError: boom second line; {cli.DEBUG_HINT}"]


@pytest.mark.parametrize("where", ["first", "last"])
def test_debug_anywhere_prints_the_traceback_of_an_unexpected_exception(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aloekit import models

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(models, "resolve", broken)
    args = ["models", "info", "anything"]

    code = cli.main(["--debug", *args] if where == "first" else [*args, "--debug"])

    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err
    assert err.strip().splitlines()[-1] == "error: unexpected RuntimeError: boom"


def test_an_os_error_on_a_named_path_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aloekit import models

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", "/shared/results")

    monkeypatch.setattr(models, "resolve", denied)

    code = cli.main(["models", "info", "anything"])

    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: /shared/results: Permission denied"]


def test_a_command_alone_prints_its_help_and_exits_2_without_a_traceback() -> None:
    result = aloe("data")

    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "build" in result.stdout + result.stderr


def test_help_lists_debug_and_exits_0() -> None:
    result = aloe("--help")

    assert result.returncode == 0, result.stderr
    assert "--debug" in result.stdout
