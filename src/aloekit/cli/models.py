"""``aloe models ...``: resolve, convert and inspect model references."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aloekit import models
from aloekit.cli.options import AllowPickle, TrustCode

models_app = typer.Typer(help="Resolve, convert and inspect model references.", no_args_is_help=True)


@models_app.command("info")
def models_info(
    ref: Annotated[str, typer.Argument(help="Model reference to resolve and describe.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (its 'path' is the local folder).")
    ] = False,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Resolve REF (converting a GGUF once, into the cache) and print what the model is."""
    resolved = models.resolve(ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    info = models.info(resolved)
    if as_json:
        typer.echo(json.dumps(info.as_dict()))
        return
    # Deferred: rich costs a noticeable part of a start that --json callers (scripts) should not pay.
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in info.as_dict().items():
        shown = (
            f"{value:,}"
            if key == "parameters" and value is not None
            else ("present" if value is True else "absent" if value is False else "unknown" if value is None else value)
        )
        table.add_row(key.replace("_", " "), str(shown))
    Console().print(table)
