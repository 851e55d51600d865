"""Test data shared by several specification files (imported as ``support``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aloekit.engines import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest, PromptLogprobs

WORDS = [
    "the",
    "patient",
    "presents",
    "with",
    "fever",
    "cough",
    "chest",
    "pain",
    "after",
    "surgery",
    "which",
    "drug",
    "is",
    "first",
    "line",
    "therapy",
    "for",
    "hypertension",
    "in",
    "pregnancy",
    "a",
    "child",
    "with",
    "wheeze",
    "and",
    "low",
    "oxygen",
    "saturation",
    "needs",
    "urgent",
    "assessment",
]
MEDICAL_PROMPTS = (
    "What are the symptoms of iron deficiency anaemia?",
    "How is type 1 diabetes different from type 2 diabetes?",
    "What does a high troponin level suggest?",
    "Name two common side effects of metformin.",
    "What is the normal resting heart rate for an adult?",
    "When should a fever in an infant be checked by a doctor?",
    "What is the mechanism of action of aspirin?",
    "What are the warning signs of a stroke?",
)


def random_pairs(n: int, seed: int, shared: int = 4) -> list[LoglikelihoodRequest]:
    """n (context, multi-token continuation) pairs; every `shared` consecutive pairs share one context."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        if i % shared == 0:
            context = " ".join(rng.choices(WORDS, k=rng.randint(3, 25)))
        pairs.append(LoglikelihoodRequest(context, " " + " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))))
    return pairs


def aloe(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``aloe ARGS`` as a user would, in a fresh interpreter, with the parent environment plus offline mode."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "aloekit.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def without_module(name: str, folder: Path) -> dict[str, str]:
    """Environment for :func:`aloe` in which importing ``name`` fails as if it were not installed (a package of
    that name under ``folder``, first on PYTHONPATH, raises ImportError): the not-installed path runs everywhere,
    also where the package is installed (CI installs llama-cpp-python)."""
    package = folder / "hidden-modules" / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"raise ImportError('{name} is hidden by the test')\n")
    paths = [str(package.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def assert_one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit code 2, and stderr is a single ``error: ...`` line naming each of ``names``; never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0]
    return lines[0]


def assert_error_after_progress(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Like :func:`assert_one_line_error` for long commands: progress lines may precede it on stderr, but the
    error is one ``error: ...`` line, last, naming each of ``names``; exit code 2; never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in result.stderr.splitlines()) == 1
    for name in names:
        assert name in last
    return last


class ScriptedEngine:
    """Test double for an Engine: replies come from ``script(request)``; every call and request is recorded.

    ``die_after`` simulates a killed process: the call after that many calls raises instead of answering.
    """

    name = "scripted"
    model_id = "scripted-model"

    def __init__(
        self,
        script: Callable[[GenerationRequest], str | list[str]],
        *,
        die_after: int | None = None,
        finish: str = "stop",
    ) -> None:
        self.script = script
        self.die_after = die_after
        self.finish = finish
        self.calls: list[list[GenerationRequest]] = []

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for call in self.calls for r in call]

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        if self.die_after is not None and len(self.calls) >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(list(requests))
        out = []
        for r in requests:
            # A script may return one text (repeated for n samples) or a list of n texts.
            reply = self.script(r)
            texts = reply if isinstance(reply, list) else [reply] * r.n
            out.append(Generation(texts, [self.finish] * len(texts), 10, [7] * len(texts)))  # type: ignore[list-item]
        return out

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        raise NotImplementedError

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def accelerate_cpu(*aloe_args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` with the shipped 2-process CPU config (gloo) running ``aloe ARGS``."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "ddp_cpu.yaml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(recipe)]
    launcher += ["--main_process_port", str(free_port())]
    return subprocess.run(
        [*launcher, "-m", "aloekit.cli", *aloe_args], env=env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    """A TCP port nobody listens on now, so two launches on one machine never fight over accelerate's default."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
