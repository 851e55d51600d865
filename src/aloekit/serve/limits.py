"""What one client may ask of ``aloe serve``: the limits and the constants behind them."""

from __future__ import annotations

from dataclasses import dataclass

from aloekit.errors import UserError

BATCH_WINDOW_S = 0.005
"""How long the batcher waits after the first request for others to join its batch. A few milliseconds is
negligible next to a forward pass, and catches clients that fire many requests at once."""
MAX_N = 128
"""Most samples one request may ask for: n multiplies the work a single small request can cause."""
MAX_LOGPROBS = 20
"""Most alternatives per position for ``logprobs`` (vLLM's default limit; OpenAI allows 5)."""
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server. Defaults match ``aloe serve``'s flags."""

    max_request_bytes: int = 1_000_000
    """Largest request body (413 above)."""
    max_tokens: int = 2048
    """Largest ``max_tokens`` a request may ask for (400 above)."""
    max_concurrency: int = 8
    """Most requests handed to the engine in one batch."""
    max_queue: int = 64
    """Most requests waiting for the engine; more get 429."""
    max_work: int = 8192
    """Most tokens one request may ask the engine to generate: prompts x n x max_tokens (400 above). Without it
    one request (128 prompts x 128 samples x 2,048 tokens) could hold the engine for hours; 8,192 tokens is about
    a minute for the embedded 135M model batched on a CPU."""
    max_per_key: int = 16
    """Most requests one client (its bearer token, else its address) may have waiting or running; more get 429.
    Above our openai backend's 8 concurrent requests, well below max_queue, so one client cannot fill the queue."""

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_tokens", "max_concurrency", "max_queue", "max_work", "max_per_key"):
            if getattr(self, name) < 1:
                raise UserError(f"server limit {name} must be >= 1, got {getattr(self, name)}")


# --- errors ------------------------------------------------------------------------------------------------
