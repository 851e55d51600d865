"""DATACARD.md: what a built dataset holds, where it came from, what was removed and why, in words people read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _funnel(stats: dict[str, Any]) -> str:
    stages = ["read", "malformed", "cleaned out", "unusable", "exact duplicates", "contaminated", "near duplicates"]
    stages += ["available", "train", "validation"]
    present = [s for s in stages if any(s in c for c in stats["sources"].values())]
    rows = [[label, *(c.get(s, 0) for s in present)] for label, c in stats["sources"].items()]
    return _table(["source", *present], rows)


def _dropped(stats: dict[str, Any]) -> str:
    rows = [
        [stage, reason, d["count"], "; ".join(d["examples"])[:160]]
        for stage, reasons in stats["dropped"].items()
        for reason, d in reasons.items()
    ]
    return _table(["stage", "reason", "rows", "examples"], rows) if rows else "Nothing was dropped."


def _decontamination(report: dict[str, Any]) -> str:
    rows = []
    for name, c in report.get("benchmarks", {}).items():
        rows.append([name, c.get("status", ""), c.get("items", ""), c.get("removed", 0)])
    out = [
        f"Word {report.get('n', 13)}-gram overlap against every evaluation set below "
        f"({report.get('short_text_rule')}). Removed samples are listed in `decontamination.json`.",
        "",
        _table(["evaluation set", "status", "items", "training samples removed"], rows),
        "",
        "Overlaps remaining in the written splits (re-scanned after the build): "
        f"**{report.get('remaining_overlaps')}**.",
    ]
    excluded = [n for n, c in report.get("benchmarks", {}).items() if c.get("status") == "excluded"]
    if excluded:
        out += [
            "",
            f"**Not checked on purpose: {', '.join(excluded)}.** Data from these evaluation sets may be in the "
            "training splits; results on them for a model trained on this dataset are not evaluations and must "
            "not be reported as such.",
        ]
    return "\n".join(out)


def _tail(stats: dict[str, Any], report: dict[str, Any], config: BaseModel, intended_use: str) -> list[str]:
    """The sections every data card ends with: decontamination, drops, intended use, the config as run."""
    return [
        "## Decontamination",
        "",
        _decontamination(report),
        "",
        "## Rows not kept, by reason",
        "",
        _dropped(stats),
        "",
        "## Intended use and limits",
        "",
        intended_use,
        "",
        "## How it was made",
        "",
        "```yaml",
        _yaml(config),
        "```",
        "",
    ]


def mixture_card(stats: dict[str, Any], report: dict[str, Any], config: BaseModel) -> str:
    tasks = stats["tasks"].get("train", {})
    cot = stats.get("chain_of_thought", {})
    parts = [
        "# Data card",
        "",
        f"A supervised fine-tuning mixture built by aloekit (`aloe data build`), seed {stats['seed']}: "
        f"**{stats['train']:,} training** and **{stats['validation']:,} validation** chat samples "
        "(`messages` layout, one JSON object per line).",
        "",
        "## Sources and what happened to their rows",
        "",
        _funnel(stats),
        "",
        "## Tasks (training split)",
        "",
        _table(["task", "samples"], [[t, n] for t, n in tasks.items()]),
        "",
        "Multiple-choice answers end with a final line `Answer: X`. Chain-of-thought for multiple-choice items: "
        + (", ".join(f"{k}: {v}" for k, v in cot.items()) or "none")
        + " (teacher = verified to reach the key; explanation = the set's expert explanation, templated; "
        "none = answer only).",
        "",
        "## Lengths (words per sample)",
        "",
        _table(
            ["split", "mean", "median", "p95", "max"],
            [[n, w["mean"], w["p50"], w["p95"], w["max"]] for n, w in stats["words"].items()],
        ),
        "",
        "## General-data share",
        "",
        f"Asked: {stats['general_share'].get('asked')}; reached: {stats['general_share'].get('reached')}."
        + (f" {stats['general_share']['note']}." if stats["general_share"].get("note") else ""),
        "",
        *_tail(
            stats,
            report,
            config,
            "Training data for research on medical language models. Several sources are synthetic or scraped "
            "(dialogues, patient-information pages) and carry their own licences and research-only terms: check "
            "each source's licence before any other use. Nothing here is medical advice, and a model trained on it "
            "is not a medical device.",
        ),
    ]
    return "\n".join(parts)


def _yaml(config: BaseModel) -> str:
    import json

    import yaml

    return yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False).rstrip()


def prefs_card(stats: dict[str, Any], report: dict[str, Any], config: BaseModel) -> str:
    styles = stats.get("attack_styles", {})
    parts = [
        "# Data card: preference pairs",
        "",
        f"Preference pairs for DPO built by aloekit (`aloe data prefs`), seed {stats['seed']}: "
        f"**{stats['train']:,} training** and **{stats['validation']:,} validation** pairs in TRL's conversational "
        "layout (`prompt`, `chosen`, `rejected` as message lists). Pairs made from one request in several attack "
        "styles stay on one side of the split.",
        "",
        "## Kinds of pairs",
        "",
        _table(["category", "pairs"], [[c, n] for c, n in stats.get("categories", {}).items()]),
        "",
        "- **medical**: chosen = reasoning verified to reach the answer key; rejected = the policy model's own "
        "wrong (or unreadable) answer to the same question.",
        "- **redteam**: a harmful request, possibly wrapped in an attack style; chosen = a refusal that still helps "
        "where it can; rejected = a compliant reply.",
        "- **benign**: a request that sounds dangerous but is fine; chosen = a helpful answer; rejected = a refusal.",
        "",
        "## Attack styles (red-teaming pairs)",
        "",
        _table(["style", "pairs"], [[s, n] for s, n in styles.items()]) if styles else "None.",
        "",
        "## Per section",
        "",
        _funnel(stats),
        "",
        *_tail(
            stats,
            report,
            config,
            "Alignment research on medical language models. Red-teaming pairs contain harmful requests (and, as "
            "rejected replies, compliant text): handle the files accordingly and do not publish them as content.",
        ),
    ]
    return "\n".join(parts)
