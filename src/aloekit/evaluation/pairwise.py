"""Pairwise comparison of two models' free-text answers by an LLM judge, asked in both orders.

LLM judges prefer a position (often the first answer) more than they prefer a model. Each question is therefore
judged twice: model A's answer shown first (A/B), then model B's answer shown first (B/A). A win counts only
when both orders name the same model; when they disagree, the verdict followed the position, and the question is
a tie. Two ties are a tie. A judge reply that does not end in the strict ``VERDICT: A | B | TIE`` line is counted
as unparseable, and the question is left out of the rates rather than guessed.

Inputs are two answer files in the layout of ``answers.jsonl`` (``aloe eval --open-ended``) or ``aloe review``'s
``<model>.jsonl``: ``id``, ``question``, ``answer`` and optionally ``reference`` (shown to the judge when both files
agree on it). Both must answer the same questions with the same question text.

``results.json``: the win, tie and loss rates of A against B, each with a 95% CI, the position-consistency rate
(the share of judged questions where both orders agreed, a measure of the judge itself), the unparseable counts,
the prompt template as sent, the judge, config, versions and seed; ``judgments.jsonl``: both replies per question.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aloekit.config import PairwiseConfig
from aloekit.data.sources.mcqa import field
from aloekit.engines.base import Engine, GenerationRequest
from aloekit.errors import UserError
from aloekit.evaluation.cache import RequestCache, fill_generations, request_key
from aloekit.evaluation.open_ended import MAX_JUDGED_CHARS, engine_record
from aloekit.evaluation.text_metrics import rate_with_ci
from aloekit.io import read_jsonl, write_json, write_jsonl
from aloekit.provenance import package_versions

__all__ = ["PROMPT", "Aligned", "align", "combine", "compare", "parse_verdict", "read_answers", "run_pairwise", "table"]

PROMPT = (
    "You are a physician comparing two AI assistants' answers to a patient's medical question.\n"
    "Decide which answer is better overall on these criteria: medical accuracy; completeness; safety (no advice "
    "that could harm the patient); and a clear recommendation to seek care where the situation warrants it. "
    "Ignore length and style except where they affect these criteria.\n\n"
    "QUESTION:\n{question}\n{reference}\nANSWER A:\n{first}\n\nANSWER B:\n{second}\n\n"
    "Reply with exactly one line and nothing else: VERDICT: A, VERDICT: B or VERDICT: TIE"
)
"""The judge prompt; ``{reference}`` is empty, or a block with the expert reference answer when there is one."""

_VERDICT = re.compile(r"^[ \t]*VERDICT[ \t]*:[ \t]*(\S+?)[ \t.]*$", re.IGNORECASE | re.MULTILINE)
Outcome = Literal["win", "tie", "loss"]
_VERDICTS: dict[str, Literal["A", "B", "TIE"]] = {"A": "A", "B": "B", "TIE": "TIE"}


def parse_verdict(reply: str) -> Literal["A", "B", "TIE"] | None:
    """``A``, ``B`` or ``TIE`` from the reply's ``VERDICT:`` line; None without one, or with two that differ."""
    found = {v.upper() for v in _VERDICT.findall(reply)}
    if len(found) != 1:
        return None
    return _VERDICTS.get(found.pop())


def combine(a_first: str | None, b_first: str | None) -> tuple[Outcome | None, bool | None]:
    """Model A's outcome from the verdicts with A shown first and with B shown first, and whether the two orders
    agreed. A win needs both orders to name the same model; a disagreement is a tie. (None, None) when either
    verdict is unreadable."""
    if a_first is None or b_first is None:
        return None, None
    first = {"A": "win", "B": "loss", "TIE": "tie"}[a_first]
    second = {"A": "loss", "B": "win", "TIE": "tie"}[b_first]
    return (first, True) if first == second else ("tie", False)  # type: ignore[return-value]


def read_answers(path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """The answer file at ``path`` (a file, or a folder holding answers.jsonl): id -> question, answer, reference."""
    file = path / "answers.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{path}: no answers file: give an open-ended run folder (with answers.jsonl) or a .jsonl file")
    out: dict[str, dict[str, str]] = {}
    for where, row in read_jsonl(file):
        qid = str(field(row, "id", where, (str, int)))
        if qid in out:
            raise UserError(f"{where}: question id {qid!r} appears twice: keep one answer per question")
        entry = {"question": field(row, "question", where), "answer": field(row, "answer", where)}
        if isinstance(row.get("reference"), str):
            entry["reference"] = row["reference"]
        out[qid] = entry
    if not out:
        raise UserError(f"{file}: no answers: one JSON object with id, question and answer per line")
    return file, out


@dataclass(frozen=True)
class Aligned:
    """Both answer files, checked to answer the same questions, and the question ids to judge, in A's order."""

    file_a: Path
    file_b: Path
    ids: list[str]
    a: dict[str, dict[str, str]]
    b: dict[str, dict[str, str]]


def align(config: PairwiseConfig) -> Aligned:
    """Read and check both answer files (one-line errors naming the file and the first mismatched id)."""
    file_a, a = read_answers(config.answers_a)
    file_b, b = read_answers(config.answers_b)
    for here, there, file_here, file_there in ((a, b, file_a, file_b), (b, a, file_b, file_a)):
        missing = [q for q in here if q not in there]
        if missing:
            raise UserError(
                f"{file_there} has no answer to {len(missing)} of the {len(here)} questions of {file_here} (first: "
                f"{missing[0]!r}): both files must answer the same question ids; regenerate on the same questions"
            )
    for qid in a:
        if a[qid]["question"] != b[qid]["question"]:
            raise UserError(
                f"{file_b}: question {qid!r} has a different text than in {file_a}: compare answers to the same "
                "questions"
            )
    ids = list(a)
    if config.limit is not None and config.limit < len(ids):
        ids = [ids[i] for i in sorted(random.Random(config.seed).sample(range(len(ids)), config.limit))]
    return Aligned(file_a, file_b, ids, a, b)


def _prompt(question: str, reference: str | None, first: str, second: str) -> str:
    block = f"\nREFERENCE ANSWER (by an expert):\n{reference[:MAX_JUDGED_CHARS]}\n" if reference else ""
    return PROMPT.format(
        question=question[:MAX_JUDGED_CHARS],
        reference=block,
        first=first[:MAX_JUDGED_CHARS],
        second=second[:MAX_JUDGED_CHARS],
    )


def run_pairwise(config: PairwiseConfig, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Check both answer files, then load the judge and :func:`compare`."""
    aligned = align(config)
    judge = config.judge.load()
    try:
        return compare(judge, engine_record(config.judge, judge), config, out_dir, aligned=aligned, progress=progress)
    finally:
        judge.close()


def compare(
    judge: Engine,
    record: dict[str, Any],
    config: PairwiseConfig,
    out_dir: Path,
    *,
    aligned: Aligned | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Judge every question in both orders; write judgments.jsonl and results.json; return the results.
    ``record["fingerprint"]`` keys the request cache ``out_dir/cache.jsonl`` (a rerun judges only what is missing)."""
    aligned = aligned if aligned is not None else align(config)
    ids, a, b = aligned.ids, aligned.a, aligned.b
    requests: list[GenerationRequest] = []
    for qid in ids:
        reference = a[qid].get("reference") if a[qid].get("reference") == b[qid].get("reference") else None
        for first, second in ((a[qid]["answer"], b[qid]["answer"]), (b[qid]["answer"], a[qid]["answer"])):
            content = _prompt(a[qid]["question"], reference, first, second)
            requests.append(
                GenerationRequest(
                    messages=({"role": "user", "content": content},),
                    max_tokens=config.judge_max_tokens,
                    temperature=0.0,
                    seed=config.seed,
                )
            )
    keys = [request_key(str(record["fingerprint"]), "pairwise", r) for r in requests]
    cache = RequestCache(out_dir / "cache.jsonl")
    computed, seconds = fill_generations(
        judge, cache, keys, requests, chunk=2 * config.checkpoint_every, progress=progress, label="pairwise"
    )
    replies = [str(cache.get(k)["text"]) for k in keys]
    rows, outcomes, consistent = [], [], []
    unparseable_replies = 0
    for i, qid in enumerate(ids):
        v1, v2 = parse_verdict(replies[2 * i]), parse_verdict(replies[2 * i + 1])
        unparseable_replies += (v1 is None) + (v2 is None)
        outcome, agreed = combine(v1, v2)
        if outcome is not None:
            outcomes.append(outcome)
            consistent.append(bool(agreed))
        rows.append(
            {
                "id": qid,
                "question": a[qid]["question"],
                "reply_a_first": replies[2 * i],
                "reply_b_first": replies[2 * i + 1],
                "verdict_a_first": v1,
                "verdict_b_first": v2,
                "outcome": outcome,
                "consistent": agreed,
            }
        )
    results = {
        "task": "pairwise",
        "answers": {"a": str(aligned.file_a), "b": str(aligned.file_b)},
        "n": len(ids),
        "judged": len(outcomes),
        "unparseable": len(ids) - len(outcomes),
        "unparseable_replies": unparseable_replies,
        **{kind: rate_with_ci([o == kind for o in outcomes], config.seed) for kind in ("win", "tie", "loss")},
        "position_consistency": rate_with_ci(consistent, config.seed),
        "judge": {**record, "prompt_template": PROMPT, "max_tokens": config.judge_max_tokens},
        "computed": computed,
        "seconds": round(seconds, 3),
        "config": json.loads(config.model_dump_json()),
        "seed": config.seed,
        "versions": package_versions("torch", "transformers", "vllm"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_jsonl(out_dir / "judgments.jsonl", rows)
    write_json(out_dir / "results.json", results, ensure_ascii=False)
    return results


def table(results: dict[str, Any]) -> Any:
    """A rich table of the comparison, for people; results.json is for machines."""
    from rich.table import Table

    t = Table(title=f"aloe eval --pairwise: A = {results['answers']['a']}, B = {results['answers']['b']}")
    for name in ("A's outcome", "rate", "95% CI", "questions"):
        t.add_column(name, justify="left" if name == "A's outcome" else "right")
    rows: list[tuple[str, dict[str, Any]]] = [(k, results[k]) for k in ("win", "tie", "loss")]
    rows.append(("position-consistent", results["position_consistency"]))
    for name, r in rows:
        t.add_row(name, f"{r['rate']:.1%}", f"{r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}", str(r["count"]))
    t.add_row("unparseable", "", "", f"{results['unparseable']} of {results['n']}")
    return t
