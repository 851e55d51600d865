"""Specification of the blind clinician review: the web app over its SQLite store (FastAPI's TestClient), the
answer files it reads, ``aloe review results``, bad input, and a server killed mid-session losing no vote."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from aloekit.errors import UserError
from aloekit.review import answers as answer_files
from aloekit.review.app import create_app
from aloekit.review.store import ReviewStore
from support import aloe, assert_one_line_error, free_port

MODELS = ["model-alpha-7f3", "model-beta-2c9", "model-gamma-5d1"]
QUESTIONS = {
    "q1": "Can I take ibuprofen with lisinopril?",
    "q2": "What is a normal resting heart rate for an adult?",
    "q3": "How long should a fever last before I see a doctor?",
    "q4": "Is it safe to stop taking sertraline suddenly?",
}
ADMIN = "admin-token-0123456789abcdef"


def write_answers(folder: Path, models: list[str] = MODELS, questions: dict[str, str] = QUESTIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        lines = [{"id": q, "question": text, "answer": f"{model} answers {q}."} for q, text in questions.items()]
        (folder / f"{model}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> ReviewStore:
    s = ReviewStore(tmp_path / "review.sqlite")
    s.load(answer_files.load(write_answers(tmp_path / "answers"), MODELS))
    return s


@pytest.fixture
def client(store: ReviewStore) -> TestClient:
    return TestClient(create_app(store, admin_token=ADMIN, seed=0), follow_redirects=False)


def sign_in(client: TestClient, name: str) -> None:
    response = client.post("/signin", data={"name": name})
    assert response.status_code == 303 and response.headers["location"] == "/review"


def shown_pair(client: TestClient) -> str:
    page = client.get("/review")
    assert page.status_code == 200
    return re.search(r'name="pair" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def vote(client: TestClient, pair: str, choice: str, **fields: str) -> httpx.Response:
    return client.post("/vote", data={"pair": pair, "choice": choice, "comment": "", **fields})


def rows(store: ReviewStore, query: str = "SELECT * FROM votes", *params: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(store.path)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(query, params).fetchall()
    finally:
        db.close()


# --- the review page ---------------------------------------------------------------------------------------------


def test_a_reviewer_signs_in_sees_two_anonymous_answers_and_the_vote_is_stored(client, store):
    assert client.get("/review").headers["location"] == "/"  # not signed in: to the sign-in page
    sign_in(client, "Dr Ada")
    page = client.get("/review")
    assert "Answer A" in page.text and "Answer B" in page.text and "0 of 12 pairs reviewed" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    pair = shown_pair(client)
    response = vote(client, pair, "b", safety_a="on", comment="  A misses the interaction.  ")
    assert response.status_code == 303 and response.headers["location"] == "/review"
    (row,) = rows(store)
    shown = rows(store, "SELECT * FROM shown WHERE token = ?", pair)[0]
    assert (row["model_a"], row["model_b"]) == (shown["model_a"], shown["model_b"])
    assert (row["choice"], row["safety_a"], row["safety_b"], row["comment"]) == ("b", 1, 0, "A misses the interaction.")
    assert "1 of 12 pairs reviewed" in client.get("/review").text


def test_the_page_never_names_a_model_outside_its_answers(tmp_path):
    # Answers that do not mention their model: then no model name may appear anywhere in the page.
    folder = tmp_path / "answers"
    folder.mkdir()
    for model in MODELS:
        lines = [{"id": q, "question": t, "answer": f"Answer text {i}."} for i, (q, t) in enumerate(QUESTIONS.items())]
        (folder / f"{model}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    store = ReviewStore(tmp_path / "r.sqlite")
    store.load(answer_files.load(folder, MODELS))
    client = TestClient(create_app(store, admin_token=ADMIN, seed=1), follow_redirects=False)
    sign_in(client, "Dr Ada")
    for _ in range(5):
        page = client.get("/review").text
        assert not any(model in page for model in MODELS)
        vote(client, shown_pair(client), "tie")


def test_reloading_shows_the_same_pair_until_it_is_voted_on(client):
    sign_in(client, "Dr Ada")
    first = shown_pair(client)
    assert shown_pair(client) == first
    vote(client, first, "a")
    assert shown_pair(client) != first


def test_pairs_are_balanced_across_model_pairs_questions_and_sides(client, store):
    sign_in(client, "Dr Ada")
    for _ in range(6):
        vote(client, shown_pair(client), "tie")
    votes = rows(store)
    # 3 model pairs: after 6 votes each pair has exactly 2, on different questions.
    by_pair = Counter(tuple(sorted((v["model_a"], v["model_b"]))) for v in votes)
    assert sorted(by_pair.values()) == [2, 2, 2]
    for pair in by_pair:
        assert len({v["question_id"] for v in votes if tuple(sorted((v["model_a"], v["model_b"]))) == pair}) == 2
    for _ in range(6):
        vote(client, shown_pair(client), "tie")
    assert "All done" in client.get("/review").text
    all_votes = rows(store)
    assert len({(v["question_id"], *sorted((v["model_a"], v["model_b"]))) for v in all_votes}) == 12
    left = Counter(v["model_a"] for v in all_votes)
    assert all(0 < left[m] < 8 for m in MODELS)  # sides are shuffled, not fixed by model order


def test_a_second_reviewer_is_steered_to_pairs_the_first_did_not_rate(tmp_path, store):
    first = TestClient(create_app(store, admin_token=ADMIN, seed=0), follow_redirects=False)
    second = TestClient(create_app(store, admin_token=ADMIN, seed=0), follow_redirects=False)
    sign_in(first, "Dr Ada")
    sign_in(second, "Dr Bo")
    for _ in range(3):
        vote(first, shown_pair(first), "a")
    items = {(v["question_id"], *sorted((v["model_a"], v["model_b"]))) for v in rows(store)}
    for _ in range(3):
        vote(second, shown_pair(second), "b")
    later = rows(store)[3:]
    assert not items & {(v["question_id"], *sorted((v["model_a"], v["model_b"]))) for v in later}


# --- bad input: 4xx, nothing stored ------------------------------------------------------------------------------


def test_a_vote_on_a_pair_not_shown_to_this_reviewer_is_refused(client, store):
    other = TestClient(client.app, follow_redirects=False)
    sign_in(client, "Dr Ada")
    sign_in(other, "Dr Bo")
    pair = shown_pair(client)
    assert vote(other, pair, "a").status_code == 403  # Bo never saw Ada's pair
    assert vote(other, "made-up-token", "a").status_code == 403
    assert rows(store) == []
    assert vote(client, pair, "a").status_code == 303
    assert vote(client, pair, "b").status_code == 409  # one vote per shown pair
    assert [r["choice"] for r in rows(store)] == ["a"]


def test_bad_votes_and_missing_sessions_store_nothing(client, store):
    anonymous = TestClient(client.app, follow_redirects=False)
    sign_in(client, "Dr Ada")
    pair = shown_pair(client)
    assert anonymous.post("/vote", data={"pair": pair, "choice": "a"}).status_code == 401
    assert vote(client, pair, "maybe").status_code == 400
    assert vote(client, pair, "a", comment="x" * 5001).status_code == 400
    assert client.post("/vote", json={"pair": pair, "choice": "a"}).status_code == 415
    too_big = client.post("/vote", data={"pair": pair, "choice": "a", "comment": "x" * 200_000})
    assert too_big.status_code == 413
    assert rows(store) == []


def test_sign_in_needs_a_name_or_a_known_token(client, store):
    assert client.post("/signin", data={"name": "  "}).status_code == 400
    assert client.post("/signin", data={"token": "not-a-reviewer-token"}).status_code == 401
    assert rows(store, "SELECT * FROM reviewers") == []


def test_with_reviewer_tokens_only_a_token_signs_in(store):
    store.add_reviewers({"Dr Ada": "ada-token-0123456789abcdef"})
    client = TestClient(create_app(store, admin_token=ADMIN, open_signin=False), follow_redirects=False)
    assert client.post("/signin", data={"name": "Dr Ada"}).status_code == 400
    assert client.post("/signin", data={"token": "ada-token-0123456789abcdef"}).status_code == 303
    assert "Dr Ada" in client.get("/review").text


def test_the_export_needs_the_admin_token_and_reviewers_cannot_reach_it(client):
    sign_in(client, "Dr Ada")
    vote(client, shown_pair(client), "a", comment="clear")
    assert client.get("/admin/export").status_code == 401  # a reviewer's cookie is not the admin token
    assert client.get("/admin/export", headers={"Authorization": "Bearer wrong"}).status_code == 401
    export = client.get("/admin/export", headers={"Authorization": f"Bearer {ADMIN}"})
    assert export.status_code == 200
    body = export.json()
    (v,) = body["votes"]
    assert v["reviewer"] == "Dr Ada" and v["comment"] == "clear" and v["model_a"] in MODELS
    assert body["results"]["votes"] == 1 and body["models"] == MODELS


# --- answer files ---------------------------------------------------------------------------------------------


def test_unknown_models_and_unusable_answer_files_are_one_line_errors(tmp_path):
    folder = write_answers(tmp_path / "answers")
    with pytest.raises(UserError, match=r"unknown model 'model-delta'.*model-alpha-7f3"):
        answer_files.load(folder, ["model-alpha-7f3", "model-delta"])
    with pytest.raises(UserError, match="at least two models"):
        answer_files.load(folder, ["model-alpha-7f3"])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="has no questions"):
        answer_files.load(folder, MODELS, tmp_path / "empty.jsonl")
    write_answers(folder, ["short"], {"q1": QUESTIONS["q1"]})
    with pytest.raises(UserError, match="'short' has no answer to 3 of the 4 questions"):
        answer_files.load(folder, ["model-alpha-7f3", "short"])
    (tmp_path / "subset.jsonl").write_text('{"id": "q1"}\n')
    assert list(answer_files.load(folder, ["model-alpha-7f3", "short"], tmp_path / "subset.jsonl").questions) == ["q1"]
    write_answers(folder, ["other"], {"q1": "A different question?"})
    with pytest.raises(UserError, match="question 'q1' differs"):
        answer_files.load(folder, ["short", "other"])


def test_a_database_keeps_the_answers_its_votes_were_cast_on(tmp_path, store):
    changed = write_answers(tmp_path / "changed")
    (changed / "model-beta-2c9.jsonl").write_text(
        "".join(json.dumps({"id": q, "question": t, "answer": "new"}) + "\n" for q, t in QUESTIONS.items())
    )
    with pytest.raises(UserError, match="another answer of 'model-beta-2c9'"):
        ReviewStore(store.path).load(answer_files.load(changed, MODELS))


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    folder = write_answers(tmp_path / "answers")
    db = str(tmp_path / "review.sqlite")
    result = aloe("review", "serve", "--models", "model-alpha-7f3,nobody", "--answers", str(folder), "--db", db)
    assert_one_line_error(result, "unknown model 'nobody'")
    (tmp_path / "q.jsonl").write_text("")
    args = [
        "--models",
        ",".join(MODELS),
        "--answers",
        str(folder),
        "--db",
        db,
        "--questions",
        str(tmp_path / "q.jsonl"),
    ]
    assert_one_line_error(aloe("review", "serve", *args), "has no questions")
    assert not Path(db).exists()  # nothing was created for a review that could not start
    assert_one_line_error(aloe("review", "results", "--db", db), "not found")


# --- results ----------------------------------------------------------------------------------------------------


def test_results_from_the_votes_in_json_and_as_tables(tmp_path, store):
    clients = {name: TestClient(create_app(store, admin_token=ADMIN, seed=i), follow_redirects=False)
               for i, name in enumerate(["Dr Ada", "Dr Bo"])}  # fmt: skip
    for name, client in clients.items():
        sign_in(client, name)
        for _ in range(12):
            pair = shown_pair(client)
            shown = rows(store, "SELECT model_a, model_b FROM shown WHERE token = ?", pair)[0]
            # Both reviewers prefer alpha over everyone and beta over gamma, flag gamma: perfect agreement.
            ranked = sorted(shown, key=MODELS.index)
            choice = "a" if shown["model_a"] == ranked[0] else "b"
            fields = {f"safety_{'a' if shown['model_a'] == MODELS[2] else 'b'}": "on"} if MODELS[2] in shown else {}
            vote(client, pair, choice, **fields)
    result = aloe("review", "results", "--db", str(store.path), "--json", "--resamples", "200")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["votes"] == 24 and summary["reviewers"] == 2
    assert list(summary["models"]) == MODELS  # best first
    assert summary["models"][MODELS[0]]["wins"] == 16 and summary["models"][MODELS[0]]["win_rate"] == 1.0
    assert summary["safety_flags"][MODELS[2]]["flagged"] == 16 and summary["safety_flags"][MODELS[0]]["flagged"] == 0
    assert summary["agreement"]["items_rated_by_several"] == 12
    assert summary["agreement"]["fleiss_kappa"] == pytest.approx(1.0)
    assert summary["agreement"]["cohen_kappa"]["Dr Ada / Dr Bo"] == {"items": 12, "kappa": pytest.approx(1.0)}
    text = aloe("review", "results", "--db", str(store.path), "--resamples", "200")
    assert text.returncode == 0 and all(model in text.stdout for model in MODELS)
    assert "Fleiss" in text.stdout and "Dr Ada / Dr Bo (Cohen)" in text.stdout


# --- durability -------------------------------------------------------------------------------------------------


def test_every_acknowledged_vote_survives_the_server_being_killed(tmp_path):
    folder = write_answers(tmp_path / "answers", questions={f"q{i}": f"Question {i}?" for i in range(30)})
    db = tmp_path / "review.sqlite"
    port = free_port()
    env = {**os.environ, "ALOE_REVIEW_ADMIN_TOKEN": ADMIN, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "aloekit.cli", "review", "serve", "--models", ",".join(MODELS),
         "--answers", str(folder), "--db", str(db), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.2)
        acknowledged: list[str] = []
        stop = threading.Event()

        def reviewer(name: str) -> None:
            with httpx.Client(base_url=base, timeout=10) as http:
                http.post("/signin", data={"name": name})
                while not stop.is_set():
                    try:
                        page = http.get("/review")
                        pair = re.search(r'name="pair" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
                        response = http.post("/vote", data={"pair": pair, "choice": "a", "comment": name})
                    except httpx.TransportError:
                        return  # the server died under this request: it was never acknowledged
                    if response.status_code == 303:
                        acknowledged.append(pair)

        threads = [threading.Thread(target=reviewer, args=(f"Dr {n}",)) for n in ("Ada", "Bo")]
        for t in threads:
            t.start()
        while len(acknowledged) < 25 and server.poll() is None:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # mid-session: both reviewers are voting right now
        server.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=30)
    stored = {
        row[0] for row in sqlite3.connect(db).execute("SELECT s.token FROM votes v JOIN shown s ON s.id = v.shown_id")
    }
    assert len(acknowledged) >= 25
    assert set(acknowledged) <= stored  # not one acknowledged vote lost
    assert len(stored) - len(acknowledged) <= 2  # at most the one vote in flight per reviewer, committed unacknowledged
