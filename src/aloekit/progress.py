"""Progress bars for long work: a rich bar with an ETA when asked for, silence otherwise.

Library calls stay quiet by default (``progress=False``); the CLI and the demo turn bars on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class progress_bar:
    """Context manager yielding ``advance(k)``; a no-op when ``enabled`` is False."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda k: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        )
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda k: self._bar.advance(task, k)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
