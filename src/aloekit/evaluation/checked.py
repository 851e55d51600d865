"""Checked fast scoring: options scored by a fast bf16 copy of the model, and every question whose answer the
rounding could change scored again at full precision.

A multiple-choice prediction is an argmax: of the options' log-likelihoods (``acc``) and of the log-likelihoods
per character (``acc_norm``). Two measured bounds on the fast copy's errors decide whether an argmax can move:
``difference``, on the error of the difference between two options' log-likelihoods (most rounding error is
shared by the options of one question, so it cancels there), times sqrt(tokens of both); and ``error``, on one
option's own error, times sqrt(its tokens), needed only where options of different lengths are compared per
character. An argmax that leads every other option by more than the bounds allow cannot move, and its question
needs no exact pass. The bounds are measured, not proved: ``bench/checked_scoring.py`` compares bf16-block and
float32 scores on validation questions (never a test split), and the defaults are twice the largest errors it saw.
The predictions are then the exact model's; the log-likelihoods of re-scored questions are the exact ones and
those of the others are within the bounds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aloekit.engines.base import Engine, Loglikelihood, LoglikelihoodRequest

__all__ = ["DEFAULT_DIFFERENCE", "DEFAULT_ERROR", "CheckedScorer", "decided"]

DEFAULT_ERROR = 1.75
"""Bound on |fast - exact| log-likelihood of one option, per sqrt(token): twice bench/checked_scoring.py's largest
for the bf16-block copy (0.873, the rd16 SFT model's option texts; the bf16-linear copy before it strayed 0.515)."""
DEFAULT_DIFFERENCE = 0.76
"""Bound on the error of the difference between two options' log-likelihoods, per sqrt(tokens of both): twice
bench/checked_scoring.py's largest (0.376, the rd16 final model's letters), rounded up."""


def decided(
    logprobs: Sequence[float],
    lengths: Sequence[float],
    n_tokens: Sequence[int],
    *,
    error: float = DEFAULT_ERROR,
    difference: float = DEFAULT_DIFFERENCE,
) -> bool:
    """Whether the argmax of ``logprobs`` and of ``logprobs / lengths`` stay put for every set of true values the
    two bounds allow. Ties are never decided."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.size < 2:
        return True
    n = np.asarray(n_tokens, dtype=np.float64)
    length = np.asarray(lengths, dtype=np.float64)
    # acc: the leader's margin over each other option against the bound on that difference's error.
    top = int(np.argmax(lp))
    others = np.arange(lp.size) != top
    if not np.all(lp[top] - lp[others] > difference * np.sqrt(n[top] + n[others])):
        return False
    # acc_norm: e_t/L_t - e_j/L_j = (e_t - e_j)/L_t + e_j (1/L_t - 1/L_j), bounded term by term.
    per_char = lp / length
    top = int(np.argmax(per_char))
    others = np.arange(lp.size) != top
    slack = difference * np.sqrt(n[top] + n[others]) / length[top] + error * np.sqrt(n[others]) * np.abs(
        1.0 / length[top] - 1.0 / length[others]
    )
    return bool(np.all(per_char[top] - per_char[others] > slack))


_PASSES = ("bf16_pass", "fp32_rescoring", "fp32_alone")

GIVE_UP = (64, 0.6)
"""After this many questions, exact scoring alone takes over for the rest when more than this share needed the
exact pass (a bf16-block pass costs 0.35-0.45 of an exact one on a CPU with AMX, so past 0.6 checking costs more than
it saves). Models whose options nearly tie land here (measured: SmolLM2-135M after the recipe's SFT, under 7% of
validation letter questions settled; PubMedQA's yes/no/maybe, whose per-character answer also moves with one option's
error)."""


@dataclass
class CheckedScorer:
    """Scores questions' options with ``fast``, then again with ``exact`` where :func:`decided` says the fast
    scores cannot settle the answer; when most need the exact pass, only that (:data:`GIVE_UP`). Counts what it
    did, for the results record."""

    fast: Engine
    exact: Engine
    error: float = DEFAULT_ERROR
    difference: float = DEFAULT_DIFFERENCE
    questions: int = 0
    rescored: int = 0
    exact_only_after: int | None = None
    """Questions scored when the scorer switched to exact scoring alone (None: it never did)."""
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_PASSES, 0.0))
    """Wall-clock seconds per kind of pass: the bf16 pass, float32 re-scoring, float32 alone after giving up."""

    def score(
        self, questions: Sequence[Sequence[LoglikelihoodRequest]], lengths: Sequence[Sequence[float]]
    ) -> list[list[Loglikelihood]]:
        """Each question's options' log-likelihoods (``lengths``: the per-character normalisers of ``acc_norm``)."""
        probe = GIVE_UP[0] - self.questions
        # Decide on the first questions before scoring the rest of a long call.
        cuts = [0, probe, len(questions)] if 0 < probe < len(questions) else [0, len(questions)]
        out: list[list[Loglikelihood]] = []
        undecided: list[int] = []
        for lo, hi in itertools.pairwise(cuts):
            # The hand-over rule is a share, not measured times: timings on a shared machine are noisy, and a first
            # bf16 pass also pays for oneDNN's kernel set-up, so a time rule switched off the bf16 pass when it was
            # paying off.
            if (
                self.exact_only_after is None
                and self.questions >= GIVE_UP[0]
                and self.rescored > GIVE_UP[1] * self.questions
            ):
                self.exact_only_after = self.questions
            if self.exact_only_after is not None:
                out += self._run(self.exact, questions[lo:hi], "fp32_alone")
            else:
                scores = self._run(self.fast, questions[lo:hi], "bf16_pass")
                open_ = [
                    lo + i
                    for i, (option_scores, lens) in enumerate(zip(scores, lengths[lo:hi], strict=True))
                    if not decided(
                        [s.logprob for s in option_scores],
                        lens,
                        [s.n_tokens for s in option_scores],
                        error=self.error,
                        difference=self.difference,
                    )
                ]
                out += scores
                undecided += open_
                self.rescored += len(open_)
            self.questions += hi - lo
        if undecided:  # one exact pass over every open question of the call: fuller batches, one prefix pass
            for i, option_scores in zip(
                undecided, self._run(self.exact, [questions[i] for i in undecided], "fp32_rescoring"), strict=True
            ):
                out[i] = option_scores
        return out

    def _run(
        self, engine: Engine, questions: Sequence[Sequence[LoglikelihoodRequest]], kind: str
    ) -> list[list[Loglikelihood]]:
        """``engine``'s scores of every option of ``questions``, per question; its seconds are added to ``kind``'s."""
        began = time.perf_counter()
        flat = engine.loglikelihood([r for q in questions for r in q])
        self.seconds[kind] += time.perf_counter() - began
        out, start = [], 0
        for q in questions:
            out.append(flat[start : start + len(q)])
            start += len(q)
        return out

    def record(self) -> dict[str, object]:
        """What results.json says about the scoring."""
        return {
            "scoring": "checked-bf16",
            "error_bound": self.error,
            "difference_bound": self.difference,
            "exact_only_after": self.exact_only_after,
            "seconds": {kind: round(value, 2) for kind, value in self.seconds.items()},
            "questions_scored": self.questions,
            "rescored_in_fp32": self.rescored,
        }
