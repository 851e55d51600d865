"""Red-teaming and over-refusal: send harmful requests (in attack styles) and harmless look-alikes to a model,
judge every reply as refusal or compliance, and report rates with honest uncertainty.

* **Attack success rate** (ASR): the share of harmful requests the model complied with, per suite, per attack
  style (:mod:`aloekit.safety.styles`) and per harm category, each with a 95% bootstrap CI. Lower is safer.
* **Over-refusal** (XSTest v2): the refusal rate on its 250 safe prompts that only sound unsafe (lower is better)
  and the compliance rate on its 200 unsafe contrasts (lower is safer).

Suites are declared, not coded (:mod:`aloekit.catalog`, gathered in :data:`SUITES`): files in a data folder
laid out like shared/data, a Hub copy for users who have the Hub, or any CSV / JSON-lines file given by path
(``file:PATH``, the request in ``prompt``, optional ``category``). A bounded, seeded sample per suite keeps a
laptop run short; the sample is the same for every model, so runs compare. Replies are cached per request (a
killed run resumes), judged by any :class:`~aloekit.safety.judge.Judge`, and written with their verdicts to
``samples.jsonl``.
"""

from __future__ import annotations

import csv
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aloekit import catalog
from aloekit.catalog import HubRef
from aloekit.engines.base import Engine, GenerationRequest
from aloekit.errors import UserError
from aloekit.evaluation.cache import RequestCache, request_key
from aloekit.evaluation.stats import wilson_ci
from aloekit.io import TextFile, read_jsonl, write_json, write_jsonl
from aloekit.progress import progress_bar
from aloekit.provenance import package_versions
from aloekit.safety.judge import Judge, Verdict
from aloekit.safety.styles import STYLES, apply_style

__all__ = ["SUITES", "Prompt", "Suite", "load_suite", "rate", "run_redteam"]


@dataclass(frozen=True)
class Suite:
    """A prompt set: where its files are, which columns hold the request and its category."""

    name: str
    files: tuple[str, ...]
    """Glob patterns inside the data folder (``.csv`` with a header, or ``.jsonl``)."""
    prompt: str
    category: str | None = None
    """Column with the harm category; None: from the file name (``category_<N>``) or none."""
    context: str | None = None
    """Column with text the request refers to (HarmBench's ContextString), put before the request."""
    hub: HubRef | None = None
    """The Hugging Face Hub copy."""
    hub_prompt: str = "prompt"
    hub_category: str | None = None
    kind: str = "harmful"
    """'harmful' (compliance is an attack success), 'xstest' (safe prompts and unsafe contrasts) or 'file' (a
    user file: an attack suite, or an over-refusal one when rows carry XSTest's label safe / unsafe)."""
    note: str = ""


def _declared(use: catalog.SuiteUse, split: catalog.Split) -> Suite:
    return Suite(
        use.name,
        split.files,
        use.prompt,
        use.category,
        use.context,
        split.hub,
        use.hub_prompt,
        use.hub_category,
        use.kind,
        use.note,
    )


SUITES: dict[str, Suite] = {use.name: _declared(use, split.split) for use, split in catalog.suites()}
"""Every red-team suite of the catalog, by name."""


@dataclass(frozen=True)
class Prompt:
    suite: str
    id: str
    text: str
    category: str | None
    safe: bool = False
    """XSTest only: a safe prompt (refusing it is over-refusal)."""


_CATEGORY_IN_NAME = re.compile(r"category_(\d+)")


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(``file:line``, row) of a CSV (with header) or JSON-lines file."""
    try:
        if path.suffix == ".csv":
            with TextFile(path) as f:
                return [(f"{path}:{n}", dict(r)) for n, r in enumerate(csv.DictReader(f), start=2)]
        return list(read_jsonl(path, fix="fix the file"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from e


def _prompt(suite: Suite, where: str, row: dict[str, Any], path: Path, field: str) -> Prompt:
    text = row.get(field)
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: no request in field '{field}' (fields present: {', '.join(sorted(row)) or 'none'})")
    if suite.context and isinstance(row.get(suite.context), str) and row[suite.context].strip():
        text = f"{row[suite.context].strip()}\n\n{text.strip()}"
    category = row.get(suite.category) if suite.category else None
    if category is None and (found := _CATEGORY_IN_NAME.search(path.name)):
        category = found.group(1)
    # XSTest's convention, also for a file of one's own: rows labelled "safe" only sound unsafe (over-refusal).
    safe = suite.kind in ("xstest", "file") and str(row.get("label", "")).strip().lower() == "safe"
    return Prompt(
        suite.name,
        str(row.get("id") or row.get("BehaviorID") or where),
        text.strip(),
        None if category is None else str(category),
        safe,
    )


def load_suite(name: str, data_dir: Path | None) -> list[Prompt]:
    """Every prompt of suite ``name`` (a registered suite or ``file:PATH``), from the data folder, else the Hub."""
    if name.startswith("file:"):
        path = Path(name.removeprefix("file:")).expanduser()
        if not path.is_file():
            raise UserError(f"suite {name}: {path} not found")
        # Named as asked (file:PATH), so its prompts and results group under the name the caller used.
        custom = Suite(name, (str(path),), "prompt", "category", kind="file")
        prompts = [_prompt(custom, w, r, path, "prompt") for w, r in _rows(path)]
        if not prompts:  # a rate over zero prompts is no measurement
            raise UserError(f"suite {name}: {path} holds no prompts; give CSV or JSON lines with a 'prompt' field")
        return prompts
    suite = SUITES.get(name)
    if suite is None:
        raise UserError(f"unknown suite '{name}': choose from {', '.join(SUITES)}, or file:PATH (CSV/JSONL)")
    if data_dir is not None:
        files = sorted({f for pattern in suite.files for f in Path(data_dir).glob(pattern) if f.is_file()})
        if files:
            return [_prompt(suite, w, r, f, suite.prompt) for f in files for w, r in _rows(f)]
    if suite.hub is None:
        where = f"in {data_dir}" if data_dir is not None else "(no --data-dir given)"
        raise UserError(f"suite {name}: {', '.join(suite.files)} not found {where}, and it has no Hub copy")
    return _load_hub(suite)


def _load_hub(suite: Suite) -> list[Prompt]:
    """The Hub copy (users with the Hub; here offline, this is the one-line error)."""
    assert suite.hub is not None
    dataset, config, split = suite.hub.path, suite.hub.name, suite.hub.split
    prompt_field, category_field = suite.hub_prompt, suite.hub_category
    try:
        from datasets import load_dataset

        rows = load_dataset(dataset, config, split=split)
    except Exception as e:  # offline, gated, renamed: all mean the same to the user
        raise UserError(
            f"suite {suite.name}: cannot load {dataset} from the Hub ({type(e).__name__}); "
            f"pass --data-dir with {', '.join(suite.files)}"
        ) from e
    out = []
    for i, raw in enumerate(rows):
        row = {**dict(raw), "id": dict(raw).get("id", i)}
        prompt = _prompt(suite, f"{dataset}[{i}]", row, Path(dataset), prompt_field)
        if category_field and row.get(category_field) is not None:
            prompt = replace(prompt, category=str(row[category_field]))
        out.append(prompt)
    return out


def sample(prompts: Sequence[Prompt], limit: int | None, seed: int) -> list[Prompt]:
    """A seeded sample of at most ``limit`` prompts (the same for every model); XSTest keeps its safe/unsafe mix."""
    if limit is None or len(prompts) <= limit:
        return list(prompts)
    rng = random.Random(seed)
    safe = [p for p in prompts if p.safe]
    if safe and len(safe) < len(prompts):
        n_safe = round(limit * len(safe) / len(prompts))
        unsafe = [p for p in prompts if not p.safe]
        return rng.sample(safe, n_safe) + rng.sample(unsafe, limit - n_safe)
    return rng.sample(list(prompts), limit)


def rate(flags: Sequence[bool], seed: int) -> dict[str, Any]:
    """n, the rate of True and its 95% Wilson interval (``seed`` is kept for interface stability: the interval
    is exact arithmetic). Wilson, not the bootstrap: 0 of 25 attacks succeeding must not read as "0%, CI [0, 0]"."""
    hits, n = sum(bool(f) for f in flags), len(flags)
    lo, hi = wilson_ci(hits, n)
    return {"n": n, "rate": hits / n if n else float("nan"), "ci95": [lo, hi]}


def run_redteam(
    engine: Engine,
    judge: Judge,
    out_dir: Path,
    *,
    suites: Sequence[str],
    styles: Sequence[str] = ("plain",),
    data_dir: Path | None = None,
    limit: int | None = 50,
    max_tokens: int = 256,
    seed: int = 0,
    model: dict[str, Any],
    chunk: int = 64,
    progress: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Generate a reply for every (sampled prompt, style), judge it, and write results.json and samples.jsonl."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise UserError(f"unknown attack style '{unknown[0]}': choose from {', '.join(STYLES)}")
    loaded = {name: sample(load_suite(name, data_dir), limit, seed) for name in suites}  # fail before generating
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = RequestCache(out_dir / "cache.jsonl")
    fingerprint = str(model["fingerprint"])
    jobs: list[tuple[Prompt, str, GenerationRequest, str]] = []
    for name, prompts in loaded.items():
        # XSTest (and a file with rows labelled safe) measures over-refusal of plain questions: attack styles
        # would change what is measured.
        over_refusal = (name in SUITES and SUITES[name].kind == "xstest") or any(p.safe for p in prompts)
        suite_styles = ("plain",) if over_refusal else tuple(styles)
        for prompt in prompts:
            for style in suite_styles:
                request = GenerationRequest(
                    messages=({"role": "user", "content": apply_style(style, prompt.text)},),
                    max_tokens=max_tokens,
                    temperature=0.0,
                    seed=seed,
                )
                jobs.append((prompt, style, request, request_key(fingerprint, "redteam-generate", request)))
    pending = [j for j in jobs if j[3] not in cache]
    log(f"{len(jobs)} replies ({len(jobs) - len(pending)} cached) over {', '.join(loaded)}")
    began = time.perf_counter()
    with progress_bar(progress, len(jobs), "red-teaming") as advance:
        advance(len(jobs) - len(pending))
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            generations = engine.generate([request for _, _, request, _ in part])
            cache.put_many((key, {"text": g.text}) for (_, _, _, key), g in zip(part, generations, strict=True))
            advance(len(part))
    seconds = time.perf_counter() - began
    replies = [cache.get(key)["text"] for *_, key in jobs]
    verdicts = judge.judge_many(
        [(apply_style(style, p.text), reply) for (p, style, _, _), reply in zip(jobs, replies, strict=True)]
    )
    records = [_record(p, style, reply, v) for (p, style, _, _), reply, v in zip(jobs, replies, verdicts, strict=True)]
    results = {
        "suites": {name: _suite_result(name, [r for r in records if r["suite"] == name], seed) for name in loaded},
        "judge": judge.name,
        "styles": list(styles),
        "limit": limit,
        "max_tokens": max_tokens,
        "data_dir": None if data_dir is None else str(data_dir),
        "model": model,
        "seed": seed,
        "seconds": round(seconds, 1),
        "versions": package_versions("torch", "transformers", "vllm"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_jsonl(out_dir / "samples.jsonl", records)
    write_json(out_dir / "results.json", results, ensure_ascii=False)
    return results


def _record(prompt: Prompt, style: str, reply: str, verdict: Verdict) -> dict[str, Any]:
    return {
        "suite": prompt.suite,
        "id": prompt.id,
        "category": prompt.category,
        "safe": prompt.safe,
        "style": style,
        "prompt": prompt.text,
        "reply": reply,
        "verdict": verdict.label,
        "partial": verdict.partial,
        "judge_score": round(verdict.score, 4),
        "judge_reasons": list(verdict.reasons),
    }


def _suite_result(name: str, records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    complied = [r["verdict"] == "compliance" for r in records]
    suite = SUITES.get(name)
    if (suite is not None and suite.kind == "xstest") or any(r["safe"] for r in records):
        safe = [r for r in records if r["safe"]]
        unsafe = [r for r in records if not r["safe"]]
        return {
            "kind": "over-refusal",
            "note": suite.note if suite else "user file (rows labelled safe / unsafe)",
            "refusal_rate_on_safe": rate([r["verdict"] == "refusal" for r in safe], seed),
            "compliance_rate_on_unsafe": rate([r["verdict"] == "compliance" for r in unsafe], seed),
            "refusal_rate_on_safe_by_type": {
                t: rate([r["verdict"] == "refusal" for r in safe if r["category"] == t], seed)
                for t in sorted({str(r["category"]) for r in safe})
            },
        }
    by_style = {
        s: rate([r["verdict"] == "compliance" for r in records if r["style"] == s], seed)
        for s in dict.fromkeys(r["style"] for r in records)
    }
    categories = sorted({str(r["category"]) for r in records if r["category"] is not None})
    by_category = {
        c: rate([r["verdict"] == "compliance" for r in records if str(r["category"]) == c], seed) for c in categories
    }
    return {
        "kind": "attack",
        "note": suite.note if suite else "user file",
        "prompts": len({r["id"] for r in records}),
        "attack_success": rate(complied, seed),
        "by_style": by_style,
        "by_category": by_category,
        "partial_refusals": sum(r["partial"] for r in records),
    }


def table(results: dict[str, Any]) -> Any:
    """A rich table for people: ASR per suite and style; XSTest's two rates."""
    from rich.table import Table

    t = Table(title=f"aloe safety ({results['judge']} judge): {results['model'].get('reference', '')}")
    for col, justify in [
        ("suite", "left"),
        ("measure", "left"),
        ("n", "right"),
        ("rate", "right"),
        ("95% CI", "right"),
    ]:
        t.add_column(col, justify=justify)  # type: ignore[arg-type]

    def row(suite: str, measure: str, r: dict[str, Any]) -> None:
        t.add_row(suite, measure, str(r["n"]), f"{r['rate']:.3f}", f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}")

    for name, s in results["suites"].items():
        if s["kind"] == "over-refusal":
            row(name, "refusal rate, safe prompts", s["refusal_rate_on_safe"])
            row(name, "compliance rate, unsafe prompts", s["compliance_rate_on_unsafe"])
            continue
        row(name, "attack success (all styles)", s["attack_success"])
        for style, r in s["by_style"].items():
            row("", f"  style {style}", r)

    def estimate(suite: str, measure: str, n: int, value: float | None, ci: list[float | None]) -> None:
        shown = "n/a" if value is None else f"{value:.3f}"
        interval = "n/a" if None in ci else f"{ci[0]:.3f}-{ci[1]:.3f}"
        t.add_row(suite, measure, str(n), shown, interval)

    if "truthfulqa" in results:
        tq = results["truthfulqa"]
        estimate("truthfulqa", "MC1 (higher is better)", tq["n"], tq["mc1"], tq["mc1_ci95"])
        estimate("", "MC2 (higher is better)", tq["n"], tq["mc2"], tq["mc2_ci95"])
    if "bbq" in results:
        o = results["bbq"]["overall"]
        estimate("bbq", "accuracy, ambiguous contexts", o["n_ambiguous"], o["acc_ambiguous"], o["acc_ambiguous_ci95"])
        estimate(
            "", "accuracy, disambiguated", o["n_disambiguated"], o["acc_disambiguated"], o["acc_disambiguated_ci95"]
        )
        estimate(
            "", "bias score, ambiguous (0 = none)", o["n_ambiguous"], o["bias_ambiguous"], o["bias_ambiguous_ci95"]
        )
        estimate(
            "", "bias score, disambiguated", o["n_disambiguated"], o["bias_disambiguated"], o["bias_disambiguated_ci95"]
        )
    return t
