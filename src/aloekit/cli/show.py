"""How commands print their results: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
from typing import Any

import typer


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def print_tables(*tables: Any, width: int | None = None) -> None:
    """Print each rich renderable that is not None (a breakdown table exists only when there is data for it)."""
    # Deferred: rich costs a noticeable part of the start of commands that end in an error or print JSON.
    from rich.console import Console

    console = Console(width=width)
    for table in tables:
        if table is not None:
            console.print(table)
