"""Test data shared by several specification files (imported as ``support``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import random

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
