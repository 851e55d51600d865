"""Test data shared by several specification files (imported as ``support``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from aloekit.engines import LoglikelihoodRequest

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
