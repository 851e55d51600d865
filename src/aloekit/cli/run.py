"""``aloe run``: a recipe end to end (the stages are in :mod:`aloekit.recipe`); wiring and the dry-run plan only."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aloekit.errors import UserError


def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (recipes/demo.yaml, recipes/real-data.yaml, ...).")],
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<recipe name>).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder laid out like shared/data (overrides the recipe's).")
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Rerun this stage and every later one, even if finished.")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Rerun only this stage (earlier ones finished).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the recipe and print the plan; load no model or data.")
    ] = False,
) -> None:
    """Run a recipe end to end: data, SFT, merge, DPO (two stages), evaluation, safety, report. Rerun the same
    command after a kill: finished stages are skipped, the interrupted one resumes."""
    # Deferred: the recipe runner imports every stage (and so the training and evaluation libraries).
    from aloekit.recipe import load_recipe
    from aloekit.recipe.plan import dry_run as plan
    from aloekit.recipe.run import STAGES, run_recipe

    if from_stage is not None and only is not None:
        raise UserError("give --from or --only, not both")
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in STAGES:
            raise UserError(f"{flag} {value}: no such stage; the stages are {', '.join(STAGES)}")
    config, text, folder = load_recipe(recipe, run=out, data_dir=data_dir)
    if dry_run:
        from rich.console import Console
        from rich.table import Table

        table = Table("stage", "what it does", "how", title=f"aloe run {recipe} (dry run) -> {folder}")
        for row in plan(config, folder):
            how = row.get("launch") or row.get("engine") or row.get("data_dir") or ""
            table.add_row(row["stage"], row["does"], str(how))
        Console(width=None if sys.stdout.isatty() else 200).print(table)
        typer.echo(f"recipe {recipe} is valid: {len(STAGES)} stages planned, nothing was run")
        return
    started = time.perf_counter()
    manifests = run_recipe(
        config, text, recipe, folder, from_stage=from_stage, only=only, log=lambda m: typer.echo(m, err=True)
    )
    report = (manifests.get("report") or {}).get("outputs", {}).get("html")
    typer.echo(f"finished in {time.perf_counter() - started:.0f} s; run folder {folder}")
    if report:
        typer.echo(f"report: {report}")
