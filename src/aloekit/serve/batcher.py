"""The micro-batcher: every engine call on one worker thread, waiting requests batched together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from aloekit.engines.base import Engine
from aloekit.serve.limits import BATCH_WINDOW_S
from aloekit.serve.protocol import APIError

# One logger for the whole server, named as it was before the split (log filters rely on the name).
log = logging.getLogger("aloekit.serve")


@dataclass
class _Job:
    kind: Literal["generate", "prompt_logprobs"]
    items: Sequence[Any]  # GenerationRequests or prompt strings
    top: int
    future: asyncio.Future[list[Any]]


@dataclass
class Batcher:
    """Serialises engine calls onto one worker thread and batches the requests that wait together."""

    engine: Engine
    max_batch: int
    max_queue: int
    window_s: float = BATCH_WINDOW_S
    batches: list[int] = field(default_factory=list)
    """Jobs per engine batch, most recent last (bounded); for tests and debugging."""
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _queue: asyncio.Queue[_Job] | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def waiting(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    def _ensure_running(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[_Job]]:
        # Started lazily on the loop that serves requests: a queue and a task belong to one event loop, and the
        # app may be driven by uvicorn or by a test client with its own loop.
        loop = asyncio.get_running_loop()
        if self._executor is None:
            # One thread: the engine is not thread-safe, and one batch at a time is what the GPU wants anyway.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aloe-engine")
        if self._loop is not loop or self._queue is None or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._task = loop.create_task(self._run())
        return loop, self._queue

    async def submit(
        self, kind: Literal["generate", "prompt_logprobs"], items: Sequence[Any], top: int = 1
    ) -> list[Any]:
        loop, queue = self._ensure_running()
        job = _Job(kind, items, top, loop.create_future())
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            raise APIError(
                429,
                f"server busy: {self.max_queue} requests already waiting; retry later",
                type="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": "1"},
            ) from None
        return await job.future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            batch = [j for j in batch if not j.future.done()]  # requests whose client went away
            if not batch:
                continue
            self.batches = [*self.batches[-99:], len(batch)]
            try:
                await self._execute(batch)
            except Exception as e:  # never let the batcher die: fail this batch, keep serving
                log.exception("engine batch failed")
                for job in batch:
                    _settle(job, error=e)

    async def _execute(self, batch: list[_Job]) -> None:
        gen_jobs = [j for j in batch if j.kind == "generate"]
        if gen_jobs:
            await self._call_grouped(gen_jobs, lambda items: self.engine.generate(items))
        by_top: dict[int, list[_Job]] = defaultdict(list)
        for j in batch:
            if j.kind == "prompt_logprobs":
                by_top[j.top].append(j)
        for top, jobs in by_top.items():
            await self._call_grouped(jobs, functools.partial(self.engine.prompt_logprobs, top=top))

    async def _call_grouped(self, jobs: list[_Job], call: Callable[[list[Any]], Sequence[Any]]) -> None:
        """One engine call for all ``jobs``; if it fails, retry each job alone so one bad request (too long a
        prompt, say) fails only its own HTTP request, not its neighbours'."""
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        flat = [item for j in jobs for item in j.items]
        try:
            results = list(await loop.run_in_executor(self._executor, call, flat))
            if len(results) != len(flat):
                raise RuntimeError(f"engine returned {len(results)} results for {len(flat)} requests")
        except Exception as e:
            if len(jobs) == 1:
                _settle(jobs[0], error=e)
                return
            for j in jobs:
                await self._call_grouped([j], call)
            return
        start = 0
        for j in jobs:
            _settle(j, result=results[start : start + len(j.items)])
            start += len(j.items)


def _settle(job: _Job, *, result: list[Any] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():  # cancelled: the client disconnected
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result or [])


# --- ASGI gate: logging, auth, body size --------------------------------------------------------------------
