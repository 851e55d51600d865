"""Running the server: the listen check done before a model loads, uvicorn in the foreground or a thread."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI

from aloekit.engines.base import Engine
from aloekit.errors import UserError
from aloekit.serve.app import create_app
from aloekit.serve.limits import ServerLimits


def check_listen(host: str, port: int) -> None:
    """Fail now, with one line, if the server could not listen on ``host:port`` (a name that does not resolve, an
    address not on this machine, a port in use): ``aloe serve`` calls it before loading the model."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as e:
        reason = e.strerror or str(e)
        raise UserError(f"cannot listen on {host}:{port} ({reason}): choose another --port or --host") from e


def run_server(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    served_name: str | None = None,
) -> None:
    """Serve ``engine`` until interrupted (Ctrl-C), then close it. Binds loopback unless ``host`` says otherwise."""
    import uvicorn

    if not logging.getLogger("aloekit").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("aloekit").addHandler(handler)
        logging.getLogger("aloekit").setLevel(logging.INFO)
    app = create_app(
        engine, api_key=api_key, limits=limits or ServerLimits(), served_name=served_name or engine.model_id
    )
    try:
        # access_log off: the gate already logs one line per request, with its duration.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
    finally:
        engine.close()


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (``http://host:port``).

    For tests and for in-process use (e.g. pointing lm-eval's ``local-completions`` at a model loaded here).
    ``port=0`` takes a free port; the socket is bound before the thread starts, so there is no race for it.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="aloe-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.01)
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
