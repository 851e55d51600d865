"""``aloe review``: a blind pairwise review of models' answers by clinicians in a browser, and its results."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from aloekit.errors import UserError

review_app = typer.Typer(
    help="Blind clinician review: serve answer pairs to reviewers in a browser; score the votes.", no_args_is_help=True
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@review_app.command("serve")
def serve(
    models: Annotated[str, typer.Option(help="Models to compare, comma-separated: their answers are NAME.jsonl.")],
    answers: Annotated[
        Path, typer.Option(help="Folder with one JSON-lines file per model, NAME.jsonl: {id, question, answer}.")
    ],
    db: Annotated[Path, typer.Option(help="SQLite file for reviewers and votes (created, or resumed).")],
    questions: Annotated[
        Path | None, typer.Option(help="JSON lines with an 'id' per line: which questions to review, in order.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8100,
    admin_token: Annotated[
        str | None,
        typer.Option(help="Token for GET /admin/export (default: $ALOE_REVIEW_ADMIN_TOKEN, else a new one, printed)."),
    ] = None,
    reviewer_tokens: Annotated[
        Path | None,
        typer.Option(help="JSON lines {name, token}: reviewers then sign in with their token only, never a name."),
    ] = None,
    max_request_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted (413 above).")] = 100_000,
    seed: Annotated[int | None, typer.Option(help="Seed for the order and sides of pairs (default: random).")] = None,
) -> None:
    """Serve the blind review: reviewers sign in, see a question and two anonymised answers, and vote."""
    from aloekit.review import answers as answer_files
    from aloekit.review.app import create_app
    from aloekit.review.store import ReviewStore
    from aloekit.serve import check_listen

    names = [m.strip() for m in models.split(",") if m.strip()]
    review = answer_files.load(answers, names, questions)
    tokens = _reviewer_tokens(reviewer_tokens) if reviewer_tokens else None
    token = admin_token or os.environ.get("ALOE_REVIEW_ADMIN_TOKEN")
    if token is not None and len(token) < 16:
        raise UserError("--admin-token must have at least 16 characters: it guards every vote and comment")
    check_listen(host, port)
    store = ReviewStore(db)
    store.load(review)
    if tokens:
        store.add_reviewers(tokens)
    if token is None:
        token = secrets.token_urlsafe(24)
        typer.echo(f"admin token (for GET /admin/export): {token}", err=True)
    if host not in LOOPBACK:
        typer.echo(f"warning: serving the review on {host}: anyone who can reach it can sign in", err=True)
    app = create_app(
        store, admin_token=token, open_signin=tokens is None, max_request_bytes=max_request_bytes, seed=seed
    )
    pairs = len(store.items())
    typer.echo(f"reviewing {len(review.questions)} questions x {len(names)} models ({pairs} pairs) into {db}", err=True)
    import uvicorn

    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def _reviewer_tokens(path: Path) -> dict[str, str]:
    from aloekit.data.sources.mcqa import field, read_jsonl

    tokens: dict[str, str] = {}
    for where, row in read_jsonl(path):
        name, token = field(row, "name", where).strip(), field(row, "token", where).strip()
        if len(token) < 16:
            raise UserError(f"{where}: the token of {name!r} is shorter than 16 characters: use a longer random one")
        if name in tokens or token in tokens.values():
            raise UserError(f"{where}: reviewer {name!r} or its token appears twice in {path}")
        tokens[name] = token
    if not tokens:
        raise UserError(f"--reviewer-tokens {path} has no reviewers: one {{name, token}} object per line")
    return tokens


@review_app.command("results")
def results(
    db: Annotated[Path, typer.Option(help="The review's SQLite file (aloe review serve --db).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples of the votes.")] = 1000,
) -> None:
    """Bradley-Terry scores and win rates with 95% CIs, safety flags per model, agreement between reviewers."""
    from aloekit.review.results import summarise, tables
    from aloekit.review.store import ReviewStore

    if not db.is_file():
        raise UserError(f"--db {db} not found: give the file aloe review serve --db wrote")
    votes = ReviewStore(db).votes()
    if not votes:
        raise UserError(f"{db} has no votes yet: results need at least one")
    summary = summarise(votes, seed=seed, resamples=resamples)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    console = Console()
    for table in tables(summary):
        console.print(table)
