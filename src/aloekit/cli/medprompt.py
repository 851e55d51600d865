"""``aloe medprompt``: build the chain-of-thought database Medprompt retrieves its few-shot examples from.

Inference itself is ``aloe eval --mode medprompt`` (and ``--ablation``); this group only prepares its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aloekit.errors import UserError

medprompt_app = typer.Typer(help="Medprompt: build the chain-of-thought database (aloe eval --mode medprompt uses it).")


@medprompt_app.command("db")
def db(
    out: Annotated[Path, typer.Option("--out", help="Folder for the database (written atomically).")],
    cot: Annotated[
        list[Path] | None,
        typer.Option("--cot", help="Verified chain-of-thought from aloe data cot (repeatable); accepted items only."),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="A registered MCQ source with expert explanations (medmcqa, pubmedqa; repeatable): each "
            "explanation that agrees with the key becomes the item's chain-of-thought.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder laid out like shared/data: sources, and the benchmarks to exclude.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="--source: only the first N items of each.")] = None,
    embedder: Annotated[
        str | None, typer.Option(help="sentence-transformers name or folder (default: all-MiniLM-L6-v2, embedded).")
    ] = None,
    exclude: Annotated[
        str | None,
        typer.Option(help="Evaluation sets deliberately not checked, comma-separated (e.g. a source's own split)."),
    ] = None,
) -> None:
    """Embed verified chain-of-thought into a faiss-indexed database; evaluation-set overlaps are dropped."""
    from dataclasses import replace

    from aloekit.data.cot import explanation_cot, load_verified
    from aloekit.data.decontaminate import DecontamConfig
    from aloekit.data.schema import MCQItem
    from aloekit.data.sources import load_source
    from aloekit.data.tally import Tally
    from aloekit.prompting.index import build_database

    if not cot and not source:
        raise UserError("give --cot FILE (aloe data cot's output) and/or --source NAME (with expert explanations)")
    items: list[MCQItem] = []
    used: list[str] = []
    for path in cot or []:
        verified = load_verified(path)
        items += verified
        used.append(f"{path} ({len(verified)} verified)")
    for name in source or []:
        records = load_source(name, data_dir=data_dir, tally=Tally(), limit=limit)
        read = [r for r in records if isinstance(r, MCQItem)]
        if not read:
            raise UserError(f"--source {name} holds no multiple-choice items")
        with_cot = [replace(i, explanation=c) for i in read if (c := explanation_cot(i)) is not None]
        items += with_cot
        used.append(f"{name} ({len(with_cot)} of {len(read)} with a usable explanation)")
    decontamination = DecontamConfig.model_validate({"exclude": exclude or ""})
    manifest = build_database(
        items, out, embedder=embedder, decontamination=decontamination, data_dir=data_dir, sources=used
    )
    removed = manifest["decontamination"]["removed"]
    checked = [n for n, c in manifest["decontamination"]["checked"].items() if c["status"] == "checked"]
    typer.echo(
        json.dumps(
            {k: manifest[k] for k in ("items", "read", "duplicate_questions", "dimension", "embedder", "sources")},
            indent=2,
        )
    )
    typer.echo(
        f"wrote {out}: {manifest['items']} items; {len(removed)} dropped for overlapping an evaluation set "
        f"(checked: {', '.join(checked) or 'none'})"
    )
