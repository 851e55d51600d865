"""The outer ASGI layer of ``aloe serve`` and ``aloe review serve``: logging, auth, body size."""

from __future__ import annotations

import hmac
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aloekit.serve.protocol import error_response

# One logger for the whole server, named as it was before the split (log filters rely on the name).
log = logging.getLogger("aloekit.serve")


class RequestGate:
    """Outer ASGI layer: one log line per request, bearer-token check and the request-size limit.

    Pure ASGI rather than a BaseHTTPMiddleware so the body can be counted as it arrives (the Content-Length
    header is checked first, but a client can lie or send chunked) and rejected before FastAPI parses it.
    ``aloe review serve`` wraps its app in it too (``api_key=None``: reviewers sign in with cookies instead).
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_logged(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
            await send(message)

        try:
            await self._handle(scope, receive, send_logged)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal server error", type="server_error")(scope, receive, send_logged)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, ms)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path") != "/health" and not self._authorized(headers):
            await error_response(
                401,
                "invalid or missing API key: send 'Authorization: Bearer KEY'",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        too_large = error_response(
            413,
            f"request body larger than the server's limit of {self.max_bytes} bytes",
            code="request_too_large",
        )
        declared = headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
        # Read the whole body here, counting bytes, whatever the header said; bodies are small (<= the limit).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        # Constant-time comparison: the time taken must not reveal how much of the key was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


# --- the app --------------------------------------------------------------------------------------------------
