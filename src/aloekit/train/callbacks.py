"""Trainer callbacks and library output shared by SFT and DPO: the step timer behind the speed figures in
metrics.json, TensorBoard event files in the run folder, and quiet library calls unless progress is asked for.

transformers is imported inside the functions: the configs importing this package must stay fast to import.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aloekit.train.common import Logging


class StepTimer:
    """Times optimizer steps, for metrics.json and benchmarks.

    ``seconds``: each step from its start to its end (forward, backward, update). ``train_seconds``: the time spent
    in steps, data loading between them included, but evaluation, saving and logging excluded. ``tokens_at_start``:
    the trainer's token count when this session's first step began (a resumed run has loaded its state by then).
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.train_seconds = 0.0
        self.tokens_at_start: int | None = None
        self.callback = _timer_callback(self)


def _timer_callback(timer: StepTimer) -> Any:
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        step_start = mark = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mark = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_start = time.perf_counter()
            if timer.tokens_at_start is None:
                timer.tokens_at_start = state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            end = time.perf_counter()
            timer.seconds.append(end - self.step_start)
            timer.train_seconds += end - self.mark
            self.mark = end

        def _reset(self, *args: Any, **kwargs: Any) -> None:
            self.mark = time.perf_counter()

        on_evaluate = on_save = on_log = _reset

    return Callback()


def trainer_callbacks(logging: Logging, folder: Path, timer: StepTimer) -> list[Any]:
    """The timer, and TensorBoard writing into ``folder/runs`` when asked. Its writer is (re)created lazily, also
    for an evaluation after training: the folder is set on the callback, not left to the trainer's default."""
    from transformers.integrations import TensorBoardCallback

    callbacks: list[Any] = [timer.callback]
    if logging.tensorboard:
        board = TensorBoardCallback()
        board.logging_dir = str(folder / "runs")
        callbacks.append(board)
    return callbacks


def report_to(logging: Logging) -> list[str] | str:
    """TrainingArguments.report_to: TensorBoard goes through our own callback (see :func:`trainer_callbacks`)."""
    targets = [target for target in logging.report_to() if target != "tensorboard"]
    return targets or "none"


def quiet_trainer(trainer: Any, progress: bool) -> None:
    """Without a progress bar the trainer prints every log line to stdout: keep library calls quiet."""
    from transformers import PrinterCallback

    if not progress:
        trainer.remove_callback(PrinterCallback)


@contextlib.contextmanager
def quiet_libraries(progress: bool) -> Iterator[None]:
    """transformers', datasets' and TRL's (tqdm) progress bars off for the call unless ``progress``, then restored."""
    if progress:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    were = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    previous = os.environ.get("TQDM_DISABLE")
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
        if were[0]:
            hf_logging.enable_progress_bar()
        if were[1]:
            datasets.enable_progress_bars()
