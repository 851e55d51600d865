"""Bradley-Terry scores from pairwise votes, with bootstrap intervals and win rates. Pure functions of the votes.

In the Bradley-Terry model, model ``i`` beats model ``j`` with probability ``1 / (1 + exp(-(s_i - s_j)))``; the
scores ``s`` are fitted by maximum likelihood. A tie (and a "both bad", which says neither answer was better)
counts as half a win for each side, the usual convention for ties without a tie parameter (Chatbot Arena's).

The fit is Newton's method on the concave log-likelihood, vectorised over bootstrap resamples (a few models, a few
thousand votes and a thousand resamples take well under a second). ``prior`` adds, for every model, that many
virtual tied games against a fixed reference of score 0: a model that won (or lost) every vote then has a large but
finite score instead of an infinite one, and every bootstrap resample has a fit. With a few hundred votes its pull
is negligible; ``prior=0`` is the plain maximum-likelihood fit, which exists only when every model has beaten, and
been beaten by, the others through some chain of votes.

Scores are natural-log strengths centred on mean 0; ``elo`` is the same on the chess scale Arena reports
(``1000 + 400 * s / ln 10``). Intervals are percentile-bootstrap intervals over votes, seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Outcome = Literal["a", "b", "tie", "both_bad"]
OUTCOMES: tuple[Outcome, ...] = ("a", "b", "tie", "both_bad")
ELO_SCALE = 400 / math.log(10)
# Resample rows held at once when counting votes: rows x votes float64 stays under 32 MiB.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Vote:
    """One judgement: model ``a``'s answer against model ``b``'s answer to the same question."""

    a: str
    b: str
    outcome: Outcome
    """``a`` better, ``b`` better, ``tie`` (equally good), ``both_bad``."""


def win_matrix(votes: Sequence[Vote], models: Sequence[str]) -> np.ndarray:
    """``W[i, j]``: wins of ``models[i]`` over ``models[j]``, ties and both-bad counted half to each."""
    return _contributions(votes, models).sum(axis=0).reshape(len(models), len(models))


def _contributions(votes: Sequence[Vote], models: Sequence[str]) -> np.ndarray:
    """One row per vote: what it adds to the flattened win matrix."""
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    rows = np.zeros((len(votes), k * k))
    for row, vote in enumerate(votes):
        if vote.a not in index or vote.b not in index:
            raise ValueError(f"vote between {vote.a!r} and {vote.b!r}: both must be among {list(models)}")
        if vote.a == vote.b:
            raise ValueError(f"a vote compares two different models, got {vote.a!r} twice")
        if vote.outcome not in OUTCOMES:
            raise ValueError(f"outcome {vote.outcome!r}: choose one of {', '.join(OUTCOMES)}")
        i, j = index[vote.a], index[vote.b]
        if vote.outcome == "a":
            rows[row, i * k + j] = 1.0
        elif vote.outcome == "b":
            rows[row, j * k + i] = 1.0
        else:
            rows[row, i * k + j] = rows[row, j * k + i] = 0.5
    return rows


def fit(wins: np.ndarray, *, prior: float = 1.0, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Bradley-Terry scores (centred natural-log strengths) from win matrices ``wins`` of shape ``(..., k, k)``.

    Raises ValueError when ``prior`` is 0 and the maximum-likelihood scores are not finite (see the module)."""
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    w = np.asarray(wins, dtype=np.float64)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2] or w.shape[-1] < 2:
        raise ValueError(f"wins must be (..., k, k) with k >= 2 models, got shape {w.shape}")
    batch, k = w.shape[:-2], w.shape[-1]
    w = w.reshape(-1, k, k)
    if prior == 0 and not all(_strongly_connected(m) for m in w):
        raise ValueError(
            "a model never won (or never lost) against the others, so its maximum-likelihood score is infinite: "
            "fit with prior > 0"
        )
    if prior > 0:
        # The reference: one more player, fixed at score 0, tied prior times with every model.
        extra = np.zeros((w.shape[0], k + 1, k + 1))
        extra[:, :k, :k] = w
        extra[:, :k, k] = extra[:, k, :k] = prior / 2
        w, anchor = extra, k
    else:
        anchor = 0  # scores are defined up to a constant: pin the first, centre at the end
    scores = _newton(w, anchor, tol, max_iter)[:, :k]
    scores -= scores.mean(axis=1, keepdims=True)
    return scores.reshape(*batch, k)


def _newton(w: np.ndarray, anchor: int, tol: float, max_iter: int) -> np.ndarray:
    n_games = w + np.swapaxes(w, 1, 2)
    won = w.sum(axis=2)
    free = [i for i in range(w.shape[1]) if i != anchor]
    theta = np.zeros(w.shape[:2])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        gradient = won - (n_games * p).sum(axis=2)
        curvature = n_games * p * (1.0 - p)
        # -Hessian of the log-likelihood: a weighted graph Laplacian, positive definite once the anchor is removed.
        system = _laplacian(curvature)[:, free][:, :, free]
        step = np.linalg.solve(system, gradient[:, free][:, :, None])[:, :, 0]
        # Far from the optimum a full Newton step can overshoot the logistic curve; at most 2 nats per iteration.
        largest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(largest, 1e-300))
        theta[:, free] += step
        if largest.max() < tol:
            return theta
    raise ValueError(f"the Bradley-Terry fit did not converge in {max_iter} Newton steps")


def _laplacian(curvature: np.ndarray) -> np.ndarray:
    out = -curvature.copy()
    diagonal = curvature.sum(axis=2)
    idx = np.arange(curvature.shape[1])
    out[:, idx, idx] = diagonal - curvature[:, idx, idx]
    return out


def _strongly_connected(w: np.ndarray) -> bool:
    """Every model reaches every other through a chain of 'beat (or tied) with' edges."""
    reach = (w > 0) | np.eye(len(w), dtype=bool)
    for _ in range(len(w)):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    return bool(reach.all())


def bradley_terry(
    votes: Sequence[Vote],
    models: Sequence[str],
    *,
    prior: float = 1.0,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per model: BT ``score`` and ``elo`` with 95% intervals, win rate (ties half) with its interval, and counts.

    Models are reported in the order of their scores, best first. Votes are resampled with replacement for the
    intervals; a model in no vote is an error (it has no score to report)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    models = list(models)
    contributions = _contributions(votes, models)
    k = len(models)
    wins = contributions.sum(axis=0).reshape(k, k)
    games = (wins + wins.T).sum(axis=1)
    if np.any(games == 0):
        missing = [m for m, g in zip(models, games, strict=True) if g == 0]
        raise ValueError(f"no votes involve {', '.join(missing)}: every model needs votes to be scored")
    scores = fit(wins, prior=prior)
    boot_scores, boot_rates = _bootstrap(contributions, k, prior, resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    s_low, s_high = np.quantile(boot_scores, [alpha, 1 - alpha], axis=0)
    # A model absent from a resample has no win rate there: that resample is left out of its interval.
    r_low, r_high = np.nanquantile(boot_rates, [alpha, 1 - alpha], axis=0)
    counts = _counts(votes, models)
    out = {}
    for i in np.argsort(-scores, kind="stable"):
        name = models[i]
        out[name] = {
            "score": float(scores[i]),
            "score_ci95": [float(s_low[i]), float(s_high[i])],
            "elo": 1000 + ELO_SCALE * float(scores[i]),
            "elo_ci95": [1000 + ELO_SCALE * float(s_low[i]), 1000 + ELO_SCALE * float(s_high[i])],
            "win_rate": float(wins[i].sum() / games[i]),
            "win_rate_ci95": [float(r_low[i]), float(r_high[i])],
            **counts[name],
        }
    return out


def _bootstrap(
    contributions: np.ndarray, k: int, prior: float, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and win rates of ``resamples`` resamples of the votes (rows of ``contributions``)."""
    rng = np.random.default_rng(seed)
    n = contributions.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    scores, rates = [], []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        wins = (counts @ contributions).reshape(rows, k, k)
        games = (wins + np.swapaxes(wins, 1, 2)).sum(axis=2)
        # A resample can leave a model out; prior > 0 still scores it (at the reference), prior = 0 cannot.
        ok = np.all(games > 0, axis=1) if prior == 0 else np.ones(rows, dtype=bool)
        if prior == 0:
            ok &= np.array([_strongly_connected(w) for w in wins])
        if ok.any():
            scores.append(fit(wins[ok], prior=prior))
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append(wins.sum(axis=2) / games)
    if not scores:
        raise ValueError("no bootstrap resample has a finite maximum-likelihood fit: use prior > 0")
    return np.concatenate(scores), np.concatenate(rates)


def _counts(votes: Sequence[Vote], models: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = {m: {"games": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for m in models}
    for vote in votes:
        a, b = counts[vote.a], counts[vote.b]
        a["games"] += 1
        b["games"] += 1
        if vote.outcome == "a":
            a["wins"] += 1
            b["losses"] += 1
        elif vote.outcome == "b":
            b["wins"] += 1
            a["losses"] += 1
        else:
            a["ties" if vote.outcome == "tie" else "both_bad"] += 1
            b["ties" if vote.outcome == "tie" else "both_bad"] += 1
    return counts


def pairwise_win_rates(votes: Sequence[Vote], models: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``rates[i][j]``: share of the votes between ``i`` and ``j`` that ``i`` won (ties half); None: never met."""
    wins = win_matrix(votes, models)
    games = wins + wins.T
    return {
        a: {b: (float(wins[i, j] / games[i, j]) if games[i, j] else None) for j, b in enumerate(models) if j != i}
        for i, a in enumerate(models)
    }


__all__ = ["OUTCOMES", "Outcome", "Vote", "bradley_terry", "fit", "pairwise_win_rates", "win_matrix"]
