"""The review's SQLite database: questions, answers, reviewers, the pairs each reviewer was shown, and the votes.

Durability first: the database runs in WAL mode with ``synchronous=FULL``, and each vote is one ``BEGIN
IMMEDIATE`` ... ``COMMIT`` transaction that ends before the browser is answered, so a vote the reviewer saw
acknowledged survives the server being killed (or the machine losing power) the next instant. Every call opens
its own connection: the web server's worker threads never share one.

A vote can only be cast on a pair the server showed that reviewer (``shown``, keyed by an unguessable token), once.
The next pair is chosen to balance comparisons: the model pair with the fewest votes (and pairs being reviewed right
now) first, then, within it, the question with the fewest, ties broken at random; the sides are random too.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit.errors import UserError
from aloekit.review.answers import ReviewSet

CHOICES = ("a", "b", "tie", "both_bad")

SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id TEXT PRIMARY KEY, text TEXT NOT NULL, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    model TEXT NOT NULL, question_id TEXT NOT NULL REFERENCES questions(id), text TEXT NOT NULL,
    PRIMARY KEY (model, question_id));
CREATE TABLE IF NOT EXISTS reviewers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shown (
    id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
    question_id TEXT NOT NULL, model_a TEXT NOT NULL, model_b TEXT NOT NULL, shown_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY, shown_id INTEGER NOT NULL UNIQUE REFERENCES shown(id),
    reviewer_id INTEGER NOT NULL REFERENCES reviewers(id), question_id TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    safety_a INTEGER NOT NULL CHECK (safety_a IN (0, 1)), safety_b INTEGER NOT NULL CHECK (safety_b IN (0, 1)),
    comment TEXT NOT NULL, created TEXT NOT NULL);
"""


class NotShown(Exception):
    """A vote for a pair the server did not show this reviewer."""


class AlreadyVoted(Exception):
    """A second vote on the same shown pair."""


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    token: str


@dataclass(frozen=True)
class Pair:
    """What one review page shows: a question and two answers, ``a`` on the left, ``b`` on the right."""

    token: str
    question: str
    answer_a: str
    answer_b: str


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ReviewStore:
    """One review database file. :meth:`load` sets the models and questions of this session (the file may hold
    more from earlier sessions; only this session's are shown)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.models: list[str] = []
        self.question_ids: list[str] = []
        try:
            with self.connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise UserError(
                f"{path}: not a review database ({e}); give a new --db file or the one a review wrote"
            ) from e

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # a committed vote is on disk, not only in the OS's cache
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- setup -------------------------------------------------------------------------------------------------

    def load(self, review: ReviewSet) -> None:
        """Add the questions and answers of ``review``; those already stored must be unchanged (votes refer to
        them). All or nothing."""
        with self.transaction() as db:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM questions").fetchone()[0]
            for qid, text in review.questions.items():
                stored = db.execute("SELECT text FROM questions WHERE id = ?", (qid,)).fetchone()
                if stored is None:
                    db.execute("INSERT INTO questions VALUES (?, ?, ?)", (qid, text, position))
                    position += 1
                elif stored[0] != text:
                    raise UserError(f"{self.path} holds question {qid!r} with another text: review it in a new --db")
            for model, answers in review.answers.items():
                for qid, text in answers.items():
                    stored = db.execute(
                        "SELECT text FROM answers WHERE model = ? AND question_id = ?", (model, qid)
                    ).fetchone()
                    if stored is None:
                        db.execute("INSERT INTO answers VALUES (?, ?, ?)", (model, qid, text))
                    elif stored[0] != text:
                        raise UserError(
                            f"{self.path} holds another answer of {model!r} to question {qid!r}: votes were cast on "
                            "that one; review the new answers in a new --db (or under another model name)"
                        )
        self.models = list(review.answers)
        self.question_ids = list(review.questions)

    def add_reviewers(self, tokens: dict[str, str]) -> None:
        """Register reviewers by name with the tokens they sign in with (``--reviewer-tokens``)."""
        with self.transaction() as db:
            for name, token in tokens.items():
                row = db.execute("SELECT token FROM reviewers WHERE name = ?", (name,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO reviewers (name, token, created) VALUES (?, ?, ?)", (name, token, _now()))
                elif row[0] != token:
                    db.execute("UPDATE reviewers SET token = ? WHERE name = ?", (token, name))

    # --- reviewers ---------------------------------------------------------------------------------------------

    def reviewer_by_name(self, name: str) -> Reviewer:
        """The reviewer called ``name``, created on first sign-in with a fresh session token."""
        with self.transaction() as db:
            row = db.execute("SELECT id, name, token FROM reviewers WHERE name = ?", (name,)).fetchone()
            if row is None:
                token = secrets.token_urlsafe(24)
                cursor = db.execute(
                    "INSERT INTO reviewers (name, token, created) VALUES (?, ?, ?)", (name, token, _now())
                )
                row = (cursor.lastrowid, name, token)
        return Reviewer(*row)

    def reviewer_by_token(self, token: str) -> Reviewer | None:
        with self.connect() as db:
            row = db.execute("SELECT id, name, token FROM reviewers WHERE token = ?", (token,)).fetchone()
        return Reviewer(*row) if row else None

    # --- pairs and votes ---------------------------------------------------------------------------------------

    def items(self) -> list[tuple[str, str, str]]:
        """Every (question, model, model) to review in this session, models in the order given."""
        return [(q, a, b) for q in self.question_ids for a, b in itertools.combinations(self.models, 2)]

    def next_pair(self, reviewer: Reviewer, rng: random.Random) -> Pair | None:
        """The pair this reviewer is shown next (the one already shown and not voted on, if any); None: done."""
        with self.transaction() as db:
            pending = db.execute(
                "SELECT s.token, s.question_id, s.model_a, s.model_b FROM shown s LEFT JOIN votes v "
                "ON v.shown_id = s.id WHERE s.reviewer_id = ? AND v.id IS NULL ORDER BY s.id DESC",
                (reviewer.id,),
            ).fetchall()
            for token, qid, a, b in pending:
                if a in self.models and b in self.models and qid in self.question_ids:
                    return self._pair(db, token, qid, a, b)
            seen = {
                (q, *sorted((a, b)))
                for q, a, b in db.execute(
                    "SELECT question_id, model_a, model_b FROM shown WHERE reviewer_id = ?", (reviewer.id,)
                )
            }
            # Votes, and pairs on screen with other reviewers now, count towards balance.
            load_by_item: Counter[tuple[str, str, str]] = Counter()
            for q, a, b in db.execute(
                "SELECT s.question_id, s.model_a, s.model_b FROM shown s LEFT JOIN votes v ON v.shown_id = s.id "
                "WHERE v.id IS NOT NULL OR s.reviewer_id != ?",
                (reviewer.id,),
            ):
                load_by_item[(q, *sorted((a, b)))] += 1
            load_by_pair: Counter[tuple[str, str]] = Counter()
            for (_, a, b), n in load_by_item.items():
                load_by_pair[(a, b)] += n
            candidates = [(q, *sorted((a, b))) for q, a, b in self.items()]
            candidates = [c for c in candidates if c not in seen]
            if not candidates:
                return None
            rng.shuffle(candidates)  # random among equally balanced items
            qid, a, b = min(candidates, key=lambda c: (load_by_pair[(c[1], c[2])], load_by_item[c]))  # type: ignore[index]
            if rng.random() < 0.5:
                a, b = b, a
            token = secrets.token_urlsafe(18)
            db.execute(
                "INSERT INTO shown (token, reviewer_id, question_id, model_a, model_b, shown_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token, reviewer.id, qid, a, b, _now()),
            )
            return self._pair(db, token, qid, a, b)

    @staticmethod
    def _pair(db: sqlite3.Connection, token: str, qid: str, a: str, b: str) -> Pair:
        question = db.execute("SELECT text FROM questions WHERE id = ?", (qid,)).fetchone()[0]
        answer = "SELECT text FROM answers WHERE model = ? AND question_id = ?"
        return Pair(
            token, question, db.execute(answer, (a, qid)).fetchone()[0], db.execute(answer, (b, qid)).fetchone()[0]
        )

    def vote(
        self, reviewer: Reviewer, pair_token: str, choice: str, *, safety_a: bool, safety_b: bool, comment: str
    ) -> int:
        """Store one vote in one transaction; return its id. Raises NotShown, AlreadyVoted or ValueError, storing
        nothing."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r}: choose one of {', '.join(CHOICES)}")
        with self.transaction() as db:
            shown = db.execute(
                "SELECT id, question_id, model_a, model_b FROM shown WHERE token = ? AND reviewer_id = ?",
                (pair_token, reviewer.id),
            ).fetchone()
            if shown is None:
                raise NotShown(pair_token)
            if db.execute("SELECT 1 FROM votes WHERE shown_id = ?", (shown[0],)).fetchone():
                raise AlreadyVoted(pair_token)
            cursor = db.execute(
                "INSERT INTO votes (shown_id, reviewer_id, question_id, model_a, model_b, choice, safety_a, safety_b, "
                "comment, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (shown[0], reviewer.id, *shown[1:], choice, int(safety_a), int(safety_b), comment, _now()),
            )
            return int(cursor.lastrowid or 0)

    def progress(self, reviewer: Reviewer) -> tuple[int, int]:
        """(pairs this reviewer voted on in this session's set, pairs in the set)."""
        items = {(q, *sorted((a, b))) for q, a, b in self.items()}
        with self.connect() as db:
            done = {
                (q, *sorted((a, b)))
                for q, a, b in db.execute(
                    "SELECT question_id, model_a, model_b FROM votes WHERE reviewer_id = ?", (reviewer.id,)
                )
            }
        return len(done & items), len(items)

    def votes(self) -> list[dict[str, Any]]:
        """Every vote, with the models and the reviewer named (for results and the admin export)."""
        with self.connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT v.id, r.name AS reviewer, v.question_id, v.model_a, v.model_b, v.choice, v.safety_a, "
                "v.safety_b, v.comment, v.created FROM votes v JOIN reviewers r ON r.id = v.reviewer_id ORDER BY v.id"
            ).fetchall()
        return [dict(r) for r in rows]


__all__ = ["CHOICES", "AlreadyVoted", "NotShown", "Pair", "ReviewStore", "Reviewer"]
