"""A request cache on disk: the result of every scored request, keyed by the hash of what was asked of which model.

It is an append-only JSON-lines file, flushed and fsynced after each batch, so a run killed at any moment keeps
every batch it finished; a torn last line (the kill landed mid-write) is ignored on reload. The key covers the
model's fingerprint and the full request, so a cache never serves a result to a different model or prompt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from aloekit.io import append_jsonl


def request_key(model: str, kind: str, request: Any) -> str:
    payload = asdict(request) if is_dataclass(request) and not isinstance(request, type) else request
    text = json.dumps({"model": model, "kind": kind, "request": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class RequestCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] = {}
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self._data[entry["key"]] = entry["value"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line from a killed run: that batch is simply scored again

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Any:
        return self._data[key]

    def put_many(self, entries: Iterable[tuple[str, Any]]) -> None:
        records = []
        for key, value in entries:
            self._data[key] = value
            records.append({"key": key, "value": value})
        append_jsonl(self.path, records)  # fsynced; a torn line from a kill stays a line of its own


def fill_loglikelihoods(
    engine: Any,
    cache: RequestCache,
    keys: Sequence[Sequence[str]],
    requests: Sequence[Sequence[Any]],
    *,
    chunk: int,
    progress: bool,
    label: str,
) -> tuple[int, float]:
    """Score every item's log-likelihood requests missing from ``cache``, ``chunk`` items per engine call (a kill
    loses at most one chunk); returns (items scored now, seconds spent). ``keys[i]`` are ``requests[i]``'s keys."""
    import time

    from aloekit.progress import progress_bar

    pending = [i for i, ks in enumerate(keys) if not all(k in cache for k in ks)]
    began = time.perf_counter()
    with progress_bar(progress, len(keys), label) as advance:
        advance(len(keys) - len(pending))
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            flat = [(k, r) for i in part for k, r in zip(keys[i], requests[i], strict=True) if k not in cache]
            scores = engine.loglikelihood([r for _, r in flat])
            cache.put_many(
                (k, {"logprob": res.logprob, "n_tokens": res.n_tokens})
                for (k, _), res in zip(flat, scores, strict=True)
            )
            advance(len(part))
    return len(pending), time.perf_counter() - began


def fill_generations(
    engine: Any,
    cache: RequestCache,
    keys: Sequence[str],
    requests: Sequence[Any],
    *,
    chunk: int,
    progress: bool,
    label: str,
) -> tuple[int, float]:
    """Generate every request missing from ``cache``, ``chunk`` per engine call (a kill loses at most one chunk),
    caching its text, finish reason and tokens (prompt plus completion); returns (generated now, seconds spent)."""
    import time

    from aloekit.progress import progress_bar

    pending = [i for i, k in enumerate(keys) if k not in cache]
    began = time.perf_counter()
    with progress_bar(progress, len(keys), label) as advance:
        advance(len(keys) - len(pending))
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            results = engine.generate([requests[i] for i in part])
            cache.put_many(
                (
                    keys[i],
                    {
                        "text": g.text,
                        "finish": g.finish_reasons[0],
                        "tokens": g.prompt_tokens + sum(g.completion_tokens),
                    },
                )
                for i, g in zip(part, results, strict=True)
            )
            advance(len(part))
    return len(pending), time.perf_counter() - began
