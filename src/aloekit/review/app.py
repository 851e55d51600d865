"""The review web app: server-rendered pages (Jinja2 templates, a few lines of inline script, no build step).

Pages and endpoints:

* ``GET /``: sign in with a name (or a token; only a token when the server was given ``--reviewer-tokens``);
  ``POST /signin`` sets a session cookie (HttpOnly, SameSite=Strict) holding the reviewer's random token.
* ``GET /review``: the next pair: a question and two answers, A (left) and B (right), with progress. Model names
  never reach the page: the form carries only the shown pair's random token.
* ``POST /vote``: ``pair``, ``choice`` (a, b, tie, both_bad), ``safety_a``/``safety_b`` (checkboxes),
  ``comment``; stored in one transaction before the 303 that acknowledges it. A pair not shown to this reviewer
  is 403, a second vote on it 409, a bad field 400; nothing is stored then.
* ``GET /admin/export``: every vote with model and reviewer names, and the results; needs
  ``Authorization: Bearer <admin token>`` (401 otherwise). Reviewers have no endpoint that shows others' votes.
* ``GET /health``.

Every page is sent with a strict Content-Security-Policy (scripts and styles only with the response's nonce) and
``Cache-Control: no-store``; request bodies are limited as in ``aloe serve`` (:class:`~aloekit.serve.RequestGate`).
"""

from __future__ import annotations

import hmac
import random
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from aloekit.review.results import summarise
from aloekit.review.store import CHOICES, AlreadyVoted, NotShown, Reviewer, ReviewStore
from aloekit.serve import RequestGate

COOKIE = "aloe_review"
MAX_NAME = 80
MAX_COMMENT = 5000
TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))


class PageError(Exception):
    """An error answered as an HTML page with ``status``."""

    def __init__(self, status: int, title: str, message: str, *, link: str = "/review") -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.link = status, title, message, link


def create_app(
    store: ReviewStore,
    *,
    admin_token: str,
    open_signin: bool = True,
    max_request_bytes: int = 100_000,
    seed: int | None = None,
) -> FastAPI:
    """The review app over ``store`` (already :meth:`~ReviewStore.load`-ed with this session's answers)."""
    if len(admin_token) < 16:
        raise ValueError("the admin token must have at least 16 characters")
    rng = random.Random(seed)
    rng_lock = threading.Lock()  # pages are rendered in worker threads; Random is not meant to be shared unlocked
    app = FastAPI(title="aloe review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGate, api_key=None, max_request_bytes=max_request_bytes)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        response = TEMPLATES.TemplateResponse(request, name, {"nonce": nonce, **context}, status_code=status)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def reviewer_of(request: Request) -> Reviewer | None:
        token = request.cookies.get(COOKIE)
        return store.reviewer_by_token(token) if token else None

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        link_text = "Sign in" if exc.link == "/" else "Back to the review"
        return page(
            request, "message.html", exc.status, title=exc.title, message=exc.message, error=True, link=exc.link,
            link_text=link_text, reviewer=None,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return await _page_error(request, PageError(exc.status_code, "Not here", str(exc.detail), link="/"))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_model=None)
    def index(request: Request) -> Response:
        if reviewer_of(request) is not None:
            return RedirectResponse("/review", status_code=303)
        return page(request, "signin.html", open_signin=open_signin, max_name=MAX_NAME, error=None)

    @app.post("/signin", response_model=None)
    async def signin(request: Request) -> Response:
        fields = await _form(request)
        name, token = fields.get("name", "").strip(), fields.get("token", "").strip()
        reviewer: Reviewer | None
        if token:
            reviewer = store.reviewer_by_token(token)
            if reviewer is None:
                return page(request, "signin.html", 401, open_signin=open_signin, max_name=MAX_NAME,
                            error="Unknown token: check it, or ask the person running the review.")  # fmt: skip
        elif not open_signin:
            return page(request, "signin.html", 400, open_signin=open_signin, max_name=MAX_NAME,
                        error="Sign in with the reviewer token you were given.")  # fmt: skip
        elif not name or len(name) > MAX_NAME or not name.isprintable():
            return page(request, "signin.html", 400, open_signin=open_signin, max_name=MAX_NAME,
                        error=f"Enter your name (1 to {MAX_NAME} characters).")  # fmt: skip
        else:
            reviewer = store.reviewer_by_name(name)
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(COOKIE, reviewer.token, httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    @app.post("/signout")
    def signout() -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/review", response_model=None)
    def review(request: Request) -> Response:
        reviewer = reviewer_of(request)
        if reviewer is None:
            return RedirectResponse("/", status_code=303)
        with rng_lock:
            pair = store.next_pair(reviewer, rng)
        done, total = store.progress(reviewer)
        if pair is None:
            return page(
                request, "message.html", title="All done, thank you", reviewer=reviewer.name, error=False,
                message=f"You have reviewed all {total} pairs.", link="/review", link_text="Check for new pairs",
            )  # fmt: skip
        return page(
            request, "review.html", pair=pair, done=done, total=total, reviewer=reviewer.name, max_comment=MAX_COMMENT
        )

    @app.post("/vote")
    async def vote(request: Request) -> RedirectResponse:
        reviewer = reviewer_of(request)
        if reviewer is None:
            raise PageError(401, "Please sign in", "Your session has ended: sign in again to vote.", link="/")
        fields = await _form(request)
        choice, comment = fields.get("choice", ""), fields.get("comment", "")
        if choice not in CHOICES:
            raise PageError(400, "Vote not recorded", f"Choose one of: {', '.join(CHOICES)}.")
        if len(comment) > MAX_COMMENT:
            raise PageError(400, "Vote not recorded", f"The comment is longer than {MAX_COMMENT} characters.")
        try:
            store.vote(
                reviewer, fields.get("pair", ""), choice,
                safety_a="safety_a" in fields, safety_b="safety_b" in fields, comment=comment.strip(),
            )  # fmt: skip
        except NotShown:
            raise PageError(403, "Vote not recorded", "This pair was not shown to you.") from None
        except AlreadyVoted:
            raise PageError(409, "Already recorded", "You have already voted on this pair.") from None
        return RedirectResponse("/review", status_code=303)

    @app.get("/admin/export")
    def export(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # Constant-time: the time taken must not reveal how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), admin_token.encode()):
            return JSONResponse(
                {"error": "missing or wrong admin token: send 'Authorization: Bearer TOKEN'"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
            )
        votes = store.votes()
        body = {
            "models": store.models,
            "questions": len(store.question_ids),
            "votes": votes,
            "results": summarise(votes) if votes else None,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return app


async def _form(request: Request) -> dict[str, str]:
    """The URL-encoded form fields of ``request`` (last value wins); 415/400 for anything else."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Not a form", "Send the page's form (application/x-www-form-urlencoded).")
    try:
        text = (await request.body()).decode("utf-8")
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=20, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Not a form", "The form could not be read.") from None
    return {key: values[-1] for key, values in parsed.items()}


__all__ = ["COOKIE", "MAX_COMMENT", "create_app"]
