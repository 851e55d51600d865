"""``aloe serve``: an OpenAI-compatible HTTP API over any :class:`~aloekit.engines.base.Engine`.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(including the legacy ``echo`` + ``logprobs`` scoring that lm-eval and our ``openai`` backend use for
log-likelihoods). Streaming is not implemented and is refused with a clear 400.

Design, in short:

* Engines are not thread-safe and hold the accelerator, so every engine call runs in ONE worker thread, never
  on the event loop (which keeps answering ``/health``, 401s and 429s while a batch runs).
* A micro-batcher collects the requests that are waiting (plus those arriving within a few milliseconds) and
  hands them to one ``engine.generate([...])`` call; the hf engine batches them on the GPU, so N concurrent
  clients cost about one forward pass per step instead of N. Results are routed back to each HTTP request.
* The wait queue is bounded: beyond ``max_queue`` waiting requests the server answers 429 at once instead of
  piling up memory and latency.
* Every error is an OpenAI-style body ``{"error": {"message", "type", "param", "code"}}``; tracebacks stay in
  the server's log.

Modules: :mod:`~aloekit.serve.limits` (what a client may ask), :mod:`~aloekit.serve.protocol` (error bodies and
request models), :mod:`~aloekit.serve.batcher`, :mod:`~aloekit.serve.gate` (logging, auth, body size),
:mod:`~aloekit.serve.app` (the endpoints) and :mod:`~aloekit.serve.run` (listen check, uvicorn).
"""

from aloekit.serve.app import create_app
from aloekit.serve.gate import RequestGate
from aloekit.serve.limits import BATCH_WINDOW_S, DEFAULT_MAX_TOKENS, MAX_LOGPROBS, MAX_N, ServerLimits
from aloekit.serve.protocol import APIError, ChatCompletionRequest, CompletionRequest, error_response
from aloekit.serve.run import check_listen, run_server, serve_in_thread

__all__ = [
    "BATCH_WINDOW_S",
    "DEFAULT_MAX_TOKENS",
    "MAX_LOGPROBS",
    "MAX_N",
    "APIError",
    "ChatCompletionRequest",
    "CompletionRequest",
    "RequestGate",
    "ServerLimits",
    "check_listen",
    "create_app",
    "error_response",
    "run_server",
    "serve_in_thread",
]
