"""``aloe run``: the recipe's stages wired to the library functions that do the work.

data -> sft -> merge -> dpo (general, then safety) -> eval (log-likelihood on every model, Medprompt on one)
-> safety (before and after alignment) -> report. :mod:`aloekit.pipeline` skips finished stages whose inputs did
not change and resumes a killed one; inside a stage, every step resumes too (finished parts are kept, training
continues from its last checkpoint, evaluations from their caches).

Layout of the run folder::

    recipe.yaml                 the recipe as written; recipe.resolved.json: as run (placeholders, defaults)
    data/     holdout/ sft/ prefs_general/ prefs_safety/ cot_db/
    sft/      train/            aloe train sft's folder (train/model: the SFT model)
    merge/    merge.yaml model/
    dpo/      train/            aloe train dpo's folder (train/general/model, train/safety/model)
    eval/     <model>/          aloe eval's results per model (letter); cloze/<model>/, generative/<model>/,
              medprompt/, ablation/
    safety/   <model>/          aloe safety's results per model
    report/   report.html report.md
    <stage>/manifest.json       status, input and output hashes, versions, seed, times
"""

from __future__ import annotations

import csv
import json
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from aloekit.errors import UserError
from aloekit.models import atomic_write_text
from aloekit.pipeline import Stage, StageContext, run_stages
from aloekit.recipe import MODEL_STAGES, RecipeConfig, merge_config
from aloekit.textio import TextFile, json_lines, read_text

__all__ = ["STAGES", "build_stages", "dry_run", "run_recipe", "split_holdout"]

# Safety runs before the benchmarks: it is the release gate, and the shorter of the two, so a run cut short (or
# killed and resumed later) has the alignment verdict first.
STAGES = ("data", "sft", "merge", "dpo", "safety", "eval", "report")


# --- data ---------------------------------------------------------------------------------------------------


def _holdout_rows(path: Path, rename: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON line, row) of a JSON-lines file (lines verbatim), or of a CSV file with a header (each row as a JSON
    object with an ``id``, its line number); ``rename`` renames columns (and then the line is re-written)."""
    if not path.is_file():
        raise UserError(f"holdout file {path} not found: fix data.holdout's path")
    if path.suffix == ".csv":
        with TextFile(path) as f:
            for number, raw in enumerate(csv.DictReader(f), 2):
                row = {"id": f"{path.stem}-{number}", **{rename.get(k, k): v for k, v in raw.items()}}
                yield json.dumps(row, ensure_ascii=False), row
        return
    # json_lines, not str.splitlines(): a U+2028 inside a JSON string is not a line break.
    for number, line in enumerate(json_lines(read_text(path)), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {number}: not JSON ({e.msg}): fix the line") from e
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number}: a row is a JSON object: fix the line")
        if rename:
            row = {rename.get(k, k): v for k, v in row.items()}
            line = json.dumps(row, ensure_ascii=False)
        yield line, row


def split_holdout(
    path: Path, fraction: float, seed: int, label: str | None = None, rename: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(train lines, eval lines) of a JSON-lines or CSV file: within each subject (or category), a seeded
    ``fraction`` (at least one row) is held out, so every subject is evaluated. JSON lines are kept verbatim (CSV
    rows become JSON lines), except that held-out rows get ``label`` when one is given."""
    by_subject: dict[str, list[str]] = {}
    for line, row in _holdout_rows(path, rename or {}):
        if label is not None:
            line = json.dumps({**row, "label": label}, ensure_ascii=False)
        subject = str(row.get("subject") or row.get("category") or "")
        by_subject.setdefault(subject, []).append(line)
    rng = random.Random(seed)
    train: list[str] = []
    held: list[str] = []
    for subject in sorted(by_subject):
        lines = by_subject[subject]
        order = list(range(len(lines)))
        rng.shuffle(order)
        n_eval = max(1, round(fraction * len(lines))) if len(lines) > 1 else 0
        chosen = set(order[:n_eval])
        held += [line for i, line in enumerate(lines) if i in chosen]
        train += [_without_label(line, label) for i, line in enumerate(lines) if i not in chosen]
    return train, held


def _without_label(line: str, label: str | None) -> str:
    if label is None:
        return line
    row = json.loads(line)
    row.pop("label", None)
    return json.dumps(row, ensure_ascii=False)


def _eval_files(recipe: RecipeConfig) -> list[Any]:
    """Every evaluation set of the recipe given by path, as decontamination's extra files."""
    from aloekit.data.decontaminate import ExtraEvalFile
    from aloekit.evaluation.benchmarks import FILE_PREFIX

    names = list(recipe.eval.benchmarks) + list(recipe.eval.medprompt.benchmarks or ())
    mcq = {n.removeprefix(FILE_PREFIX) for n in names if n.startswith(FILE_PREFIX)}
    prompts = {n.removeprefix("file:") for n in recipe.safety.suites if n.startswith("file:")}
    return [ExtraEvalFile(name=f"file:{p}", path=Path(p), format="jsonl", field="question") for p in sorted(mcq)] + [
        ExtraEvalFile(name=f"file:{p}", path=Path(p), format="jsonl", field="prompt") for p in sorted(prompts)
    ]


def _registered_evals(recipe: RecipeConfig) -> list[str]:
    from aloekit.evaluation.benchmarks import FILE_PREFIX

    names = list(recipe.eval.benchmarks) + list(recipe.eval.medprompt.benchmarks or ())
    return [n for n in dict.fromkeys(names) if not n.startswith(FILE_PREFIX)]


def _evaluation_sets(recipe: RecipeConfig) -> list[str]:
    return sorted({*_registered_evals(recipe), *(e.name for e in _eval_files(recipe))})


def _decontaminated(config: Any, recipe: RecipeConfig) -> Any:
    """``config`` (a mixture or preference config) with the recipe's own evaluation sets added to its
    decontamination: whatever the recipe evaluates on never enters training."""
    decontam = config.decontamination
    extra = tuple(decontam.extra) + tuple(
        e for e in _eval_files(recipe) if e.name not in {x.name for x in decontam.extra}
    )
    update: dict[str, Any] = {"extra": extra}
    if decontam.benchmarks is not None:  # an explicit list: the recipe's benchmarks join it
        update["benchmarks"] = tuple(dict.fromkeys([*decontam.benchmarks, *_registered_evals(recipe)]))
    return config.model_copy(update={"decontamination": decontam.model_copy(update=update)})


def _stage_data(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.data.mixture import build as build_mixture
        from aloekit.data.prefs_build import build_prefs

        data = recipe.data
        progress = sys.stderr.isatty()
        outputs: dict[str, Any] = {}
        folder = ctx.folder / "holdout"
        for holdout in data.holdout:
            train_path, eval_path = folder / f"{holdout.name}-train.jsonl", folder / f"{holdout.name}-eval.jsonl"
            if not eval_path.is_file():
                train, held = split_holdout(holdout.path, holdout.fraction, holdout.seed, holdout.label, holdout.rename)
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(train_path, "".join(f"{line}\n" for line in train))
                atomic_write_text(eval_path, "".join(f"{line}\n" for line in held))  # written last: the marker
                ctx.log(f"data: held out {len(held)} of {len(train) + len(held)} rows of {holdout.path}")
            outputs[f"holdout_{holdout.name}"] = str(eval_path)
        # Each part is written atomically: a part whose folder exists finished (the stage's folder only survives
        # a kill with the same inputs), so a resumed data stage continues with the next part.
        for key, config, builder in (
            ("sft", data.mixture, build_mixture),
            ("prefs_general", data.prefs_general, build_prefs),
            ("prefs_safety", data.prefs_safety, build_prefs),
        ):
            out = ctx.folder / key
            if not out.is_dir():
                ctx.log(f"data: building {key}")
                builder(_decontaminated(config, recipe), out, progress=progress, log=ctx.log)  # type: ignore[operator]
            outputs[key] = str(out)
        if data.cot_db is not None:
            out = ctx.folder / "cot_db"
            if not (out / "manifest.json").is_file():
                ctx.log("data: building the Medprompt chain-of-thought database")
                _build_cot_db(recipe, out)
            outputs["cot_db"] = str(out)
        return outputs

    return run


def _build_cot_db(recipe: RecipeConfig, out: Path) -> None:
    from dataclasses import replace

    from aloekit.data.cot import explanation_cot, load_verified
    from aloekit.data.decontaminate import DecontamConfig
    from aloekit.data.mixture import load_entry
    from aloekit.data.schema import MCQItem
    from aloekit.data.tally import Tally
    from aloekit.prompting.index import build_database

    settings = recipe.data.cot_db
    assert settings is not None
    items: list[MCQItem] = []
    used: list[str] = []
    for path in settings.cot:
        verified = load_verified(path)
        items += verified
        used.append(f"{path} ({len(verified)} verified)")
    for entry in settings.sources:
        read = [r for r in load_entry(entry, recipe.data_dir, Tally()) if isinstance(r, MCQItem)]
        with_cot = [replace(i, explanation=c) for i in read if (c := explanation_cot(i)) is not None]
        items += with_cot
        used.append(f"{entry.source or entry.path} ({len(with_cot)} of {len(read)} with a usable explanation)")
    registered = _registered_evals(recipe)
    decontamination = DecontamConfig(
        exclude=settings.exclude, extra=tuple(_eval_files(recipe)), benchmarks=tuple(registered) or None
    )
    build_database(
        items,
        out,
        embedder=settings.embedder,
        decontamination=decontamination,
        data_dir=recipe.data_dir,
        sources=used,
    )


# --- training -------------------------------------------------------------------------------------------------


def _launch(recipe: RecipeConfig, command: str, config: Path, resume: bool, log: Callable[[str], None]) -> None:
    """``aloe train COMMAND CONFIG`` under ``accelerate launch`` with the recipe's accelerate config."""
    launcher = recipe.launcher
    argv = ["accelerate", "launch", "--config_file", str(launcher.accelerate_config)]
    if launcher.num_processes:
        argv += ["--num_processes", str(launcher.num_processes)]
    argv += ["-m", "aloekit.cli", "train", command, str(config), "--quiet"] + (["--resume"] if resume else [])
    log("running: " + shlex.join(argv))
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise UserError(f"accelerate launch of {command} exited with {done.returncode}: see the output above")


def _tty() -> bool:
    return sys.stderr.isatty()


def _train(recipe: RecipeConfig, ctx: StageContext, command: str, config: Any, here: Callable[[bool], Any]) -> None:
    """Train ``config`` in this process (``here(resume)``) or under ``accelerate launch``; a run folder that
    already holds work (a killed attempt with the same inputs) is resumed from its last checkpoint."""
    resume = config.out.is_dir() and any(config.out.iterdir())
    if recipe.launcher.accelerate_config is None:
        here(resume)
        return
    path = ctx.folder / f"{command}.yaml"
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    _launch(recipe, command, path, resume, ctx.log)


def _sft_config(recipe: RecipeConfig, dataset: str, out: Path) -> Any:
    from aloekit.train.sft import SFTRunConfig

    return SFTRunConfig(
        **recipe.sft.model_dump(),
        model=recipe.models.base,
        dataset=dataset,
        out=out,
        allow_pickle=recipe.models.allow_pickle,
        trust_remote_code=recipe.models.trust_remote_code,
    )


def _stage_sft(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.train.sft import train_sft

        out = ctx.folder / "train"
        config = _sft_config(recipe, ctx.upstream["data"]["outputs"]["sft"], out)
        _train(
            recipe, ctx, "sft", config, lambda resume: train_sft(config, resume=resume, progress=_tty(), log=ctx.log)
        )
        return {"model": str(out / "model"), "metrics": str(out / "metrics.json")}

    return run


def _stage_merge(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.merge.run import merge

        model = ctx.folder / "model"
        if not (model / "config.json").is_file():
            sft = ctx.upstream["sft"]["outputs"]["model"]
            spec = merge_config(recipe.merge, base=recipe.models.base, instruct=recipe.instruct, sft=sft)
            path = ctx.folder / "merge.yaml"
            atomic_write_text(path, yaml.safe_dump(spec, sort_keys=False))
            merge(
                path,
                model,
                seed=ctx.seed,
                overwrite=True,
                allow_pickle=recipe.models.allow_pickle,
                trust_remote_code=recipe.models.trust_remote_code,
            )
        return {"model": str(model)}

    return run


def _dpo_config(recipe: RecipeConfig, model: str, general: str, safety: str, out: Path) -> Any:
    from aloekit.train.dpo import DPORunConfig, DPOStage

    return DPORunConfig(
        **recipe.dpo.settings.model_dump(),
        model=model,
        out=out,
        stages=(
            DPOStage(name="general", dataset=Path(general), **recipe.dpo.general.model_dump()),
            DPOStage(name="safety", dataset=Path(safety), **recipe.dpo.safety.model_dump()),
        ),
        allow_pickle=recipe.models.allow_pickle,
        trust_remote_code=recipe.models.trust_remote_code,
    )


def _stage_dpo(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.train.dpo import train_dpo

        data = ctx.upstream["data"]["outputs"]
        out = ctx.folder / "train"
        config = _dpo_config(
            recipe, ctx.upstream["merge"]["outputs"]["model"], data["prefs_general"], data["prefs_safety"], out
        )
        _train(recipe, ctx, "dpo", config, lambda resume: train_dpo(config, resume=resume, progress=_tty()))
        return {
            "dpo_general": str(out / "general" / "model"),
            "dpo_safety": str(out / "safety" / "model"),
            "metrics": {s: str(out / s / "metrics.json") for s in ("general", "safety")},
        }

    return run


# --- evaluation -----------------------------------------------------------------------------------------------


def model_paths(recipe: RecipeConfig, upstream: dict[str, Any]) -> dict[str, str]:
    """Every recipe model by label (base, sft, merged, dpo_general, dpo_safety), as far as the run has them."""
    paths = {"base": recipe.models.base}
    if "sft" in upstream:
        paths["sft"] = upstream["sft"]["outputs"]["model"]
    if "merge" in upstream:
        paths["merged"] = upstream["merge"]["outputs"]["model"]
    if "dpo" in upstream:
        paths["dpo_general"] = upstream["dpo"]["outputs"]["dpo_general"]
        paths["dpo_safety"] = upstream["dpo"]["outputs"]["dpo_safety"]
    return paths


def _engine(recipe: RecipeConfig, model: str, seed: int) -> tuple[Any, dict[str, Any]]:
    from aloekit import models

    config = recipe.engine.model_copy(update={"model": model, "seed": seed})
    options = {"allow_pickle": recipe.models.allow_pickle, "trust_remote_code": recipe.models.trust_remote_code}
    engine = config.load(**options)
    return engine, models.record(model, config.backend, **options)


class _EvalPart(NamedTuple):
    kind: str
    """loglik (letter formulation), cloze or generative: the key of the stage's outputs it is listed under."""
    label: str
    out: Path
    config: Any
    """Its :class:`aloekit.config.MCQAConfig`."""


def _eval_parts(recipe: RecipeConfig, folder: Path, base: Any) -> list[_EvalPart]:
    """Every evaluation of the eval stage, most informative first: letter log-likelihood for the full models
    (base and final), then for the stages between, then cloze, then generative. A run cut short has the headline
    comparison first; consecutive parts of one model share its engine.

    ``base`` is the letter log-likelihood config every part starts from. Letter results go to ``<label>/`` (a
    seeded subset of each benchmark for models outside ``full_models`` when ``subset`` is set), cloze ones to
    ``cloze/<label>/`` (every question), generative ones to ``generative/<label>/`` (``generative.limit``: a
    seeded subset).
    """
    section, generative = recipe.eval, recipe.eval.generative

    def variant(**update: Any) -> Any:
        return type(base).model_validate({**base.model_dump(), **update})

    sampled = variant(subset=section.subset)
    cloze = variant(formulation="cloze")
    answer = variant(mode="generate", max_tokens=generative.max_tokens, subset=generative.limit, num_fewshot=0)
    full = [label for label in section.models if section.subset is None or label in section.full_models]
    parts = [_EvalPart("loglik", label, folder / label, base) for label in full]
    parts += [_EvalPart("loglik", label, folder / label, sampled) for label in section.models if label not in full]
    parts += [_EvalPart("cloze", label, folder / "cloze" / label, cloze) for label in section.cloze_models]
    parts += [_EvalPart("generative", label, folder / "generative" / label, answer) for label in generative.models]
    return parts


def _stage_eval(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.config import MCQAConfig
        from aloekit.evaluation.mcqa import Loaded, evaluate, load_benchmarks

        section = recipe.eval
        paths = model_paths(recipe, dict(ctx.upstream))
        config = MCQAConfig(
            benchmarks=section.benchmarks,
            data_dir=recipe.data_dir,
            limit=section.limit,
            num_fewshot=section.num_fewshot,
            seed=ctx.seed,
        )
        loaded = load_benchmarks(config)  # a missing benchmark file fails before any model loads
        zero_shot: Loaded = {name: (items, []) for name, (items, _) in loaded.items()}
        outputs: dict[str, Any] = {"loglik": {}, "cloze": {}, "generative": {}}
        parts = _eval_parts(recipe, ctx.folder, config)
        # A part is done when its results.json exists; an unfinished one resumes from its cache.jsonl.
        todo = [part for part in parts if not (part.out / "results.json").is_file()]
        engine, loaded_label = None, None
        try:
            for part in todo:
                label = part.label
                if label != loaded_label:  # consecutive parts of one model share its engine
                    if engine is not None:
                        engine.close()
                    engine, loaded_label = None, None
                    engine, record = _engine(recipe, paths[label], ctx.seed)
                    loaded_label = label
                ctx.log(f"eval: {label} ({paths[label]})" + ("" if part.kind == "loglik" else f", {part.kind}"))
                shots = loaded if part.config.num_fewshot else zero_shot
                evaluate(engine, part.config, part.out, model=record, loaded=shots)
        finally:
            if engine is not None:
                engine.close()
        for part in parts:
            outputs[part.kind][part.label] = str(part.out / "results.json")
        medprompt = section.medprompt
        if medprompt.enabled:
            outputs.update(_medprompt(recipe, ctx, paths[medprompt.model]))
        return outputs

    return run


def _medprompt(recipe: RecipeConfig, ctx: StageContext, model: str) -> dict[str, Any]:
    from aloekit.config import MCQAConfig
    from aloekit.evaluation.mcqa import evaluate
    from aloekit.prompting.ablation import STEPS, run_ablation, step_dir

    section = recipe.eval.medprompt
    database = ctx.upstream["data"]["outputs"].get("cot_db")
    settings = section.settings.model_copy(update={"database": Path(database) if database else None})
    config = MCQAConfig(
        benchmarks=section.benchmarks or recipe.eval.benchmarks,
        mode="medprompt",
        medprompt=settings,
        data_dir=recipe.data_dir,
        limit=section.limit or recipe.eval.limit,
        seed=ctx.seed,
    )
    outputs: dict[str, Any] = {}
    ladder = ctx.folder / "ablation"
    # The ladder's last step is Medprompt itself when the settings are kNN + CoT: its result is the Medprompt
    # result, instead of the same generations a second time.
    last_step = step_dir(ladder, len(STEPS) - 1) / "results.json"
    same = section.ablation and settings.examples == "knn" and settings.cot
    out = ctx.folder / "medprompt"
    need_run = not same and not (out / "results.json").is_file()
    need_ladder = section.ablation and not (ladder / "ablation.json").is_file()
    if need_run or need_ladder:
        engine, record = _engine(recipe, model, ctx.seed)
        try:
            if need_run:
                ctx.log(f"eval: Medprompt on {section.model}")
                evaluate(engine, config, out, model=record)
            if need_ladder:
                ctx.log(f"eval: the Medprompt ladder on {section.model}")
                run_ablation(engine, config, ladder, model=record, progress=sys.stderr.isatty(), log=ctx.log)
        finally:
            engine.close()
    outputs["medprompt"] = str(last_step if same else out / "results.json")
    if section.ablation:
        outputs["ablation"] = str(ladder / "ablation.json")
    return outputs


def _full_model(section: Any, label: str) -> bool:
    return section.full_models is None or label in section.full_models


def _safety_limit(section: Any, label: str) -> int | None:
    """Prompts per suite for ``label``: every one of ``limit`` for full models, the ``subset`` sample for others."""
    if section.full_models is None or label in section.full_models or section.subset is None:
        return section.limit
    return section.subset if section.limit is None else min(section.limit, section.subset)


def _stage_safety(recipe: RecipeConfig) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.config import EngineConfig
        from aloekit.safety.evaluate import evaluate_safety
        from aloekit.safety.judge import OfflineJudge

        section = recipe.safety
        paths = model_paths(recipe, dict(ctx.upstream))
        outputs: dict[str, Any] = {}
        judge_engine = None
        judge: Any = OfflineJudge()
        try:
            for label in section.models:
                out = ctx.folder / label
                if not (out / "risk.md").is_file():  # risk.md is written last
                    if judge_engine is None and section.judge.startswith("llm:"):
                        from aloekit.safety.llm_judge import LLMJudge

                        reference = section.judge.removeprefix("llm:")
                        judge_engine = EngineConfig(model=reference, backend=recipe.engine.backend).load()
                        judge = LLMJudge(judge_engine)
                    ctx.log(f"safety: {label} ({paths[label]})")
                    engine, record = _engine(recipe, paths[label], ctx.seed)
                    try:
                        evaluate_safety(
                            engine,
                            judge,
                            out,
                            suites=section.suites,
                            styles=section.styles,
                            data_dir=recipe.data_dir,
                            limit=_safety_limit(section, label),
                            max_tokens=section.max_tokens,
                            seed=ctx.seed,
                            model=record,
                            # BBQ and TruthfulQA measure what the issue compares before and after (base and
                            # final): intermediate models outside full_models skip them (~7 min each here).
                            bias=section.bias and _full_model(section, label),
                            bbq_limit=section.bbq_limit,
                            truthfulness=section.truthfulness and _full_model(section, label),
                            truthfulqa_limit=section.truthfulqa_limit,
                            progress=sys.stderr.isatty(),
                            log=ctx.log,
                        )
                    finally:
                        engine.close()
                outputs[label] = str(out / "results.json")
        finally:
            if judge_engine is not None:
                judge_engine.close()
        return outputs

    return run


# --- report ---------------------------------------------------------------------------------------------------


def _read(path: str | Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _short_names(results: Any, key: str) -> Any:
    """``results`` with ``file:/long/path/mcq-eval.jsonl`` entries under ``key`` shown as ``mcq-eval``: the
    report names what was measured, the results files keep the full path."""
    if not isinstance(results, dict) or not isinstance(results.get(key), dict):
        return results
    named = {(Path(k[5:]).stem if k.startswith("file:") else k): v for k, v in results[key].items()}
    return {**results, key: named}


def summary(recipe: RecipeConfig, text: str, recipe_path: Path, manifests: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows, gathered from the stages' outputs (see :mod:`aloekit.report.html`)."""
    from aloekit.data.inspect import dataset_stats
    from aloekit.provenance import package_versions

    outputs = {name: m.get("outputs") or {} for name, m in manifests.items()}
    paths = model_paths(recipe, manifests)
    data = outputs.get("data", {})
    result: dict[str, Any] = {
        "title": f"aloekit run: {recipe.name}",
        "recipe": {"name": recipe.name, "path": str(recipe_path), "text": text},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": recipe.seed,
        "models": {"base": recipe.models.base, "instruct": recipe.instruct, "final": paths.get("dpo_safety")},
        "versions": package_versions("aloekit", "torch", "transformers", "trl", "peft", "accelerate", "vllm"),
        "stages": [
            {"name": n, "status": m.get("status"), "seconds": m.get("seconds")}
            for n, m in manifests.items()
            if n != "report"
        ],
        "data": {k: dataset_stats(Path(data[k])) for k in ("sft", "prefs_general", "prefs_safety") if k in data},
    }
    if data.get("cot_db"):
        result["data"]["cot_db"] = _read(Path(data["cot_db"]) / "manifest.json")
    training: dict[str, Any] = {}
    sft_metrics = _read(outputs.get("sft", {}).get("metrics"))
    if sft_metrics:
        history = sorted(
            sft_metrics.get("train_losses", []) + sft_metrics.get("eval_losses", []), key=lambda h: h["step"]
        )
        training["sft"] = {"log_history": history, "metrics": sft_metrics}
    for stage, path in (outputs.get("dpo", {}).get("metrics") or {}).items():
        metrics = _read(path)
        if metrics:
            training[f"dpo_{stage}"] = {"log_history": metrics.get("log_history", []), "metrics": metrics}
    result["training"] = training
    result["skipped"] = {"benchmarks": list(recipe.eval.skipped), "suites": list(recipe.safety.skipped)}
    evals = outputs.get("eval", {})
    loglik = evals.get("loglik", {})
    result["benchmarks"] = {
        label: _short_names(_read(loglik[label]), "benchmarks") for label in MODEL_STAGES if label in loglik
    }
    # The other formulations, per model: cloze (option text) and generative (the answer read from a reply, with
    # its unparseable and cut-at-the-limit shares).
    result["formulations"] = {
        formulation: {
            label: _short_names(_read(evals[formulation][label]), "benchmarks")
            for label in MODEL_STAGES
            if label in evals[formulation]
        }
        for formulation in ("cloze", "generative")
        if evals.get(formulation)
    }
    result["medprompt"] = {
        "model": recipe.eval.medprompt.model,
        "results": _short_names(_read(evals.get("medprompt")), "benchmarks"),
        "ladder": _short_ladder(_read(evals.get("ablation"))),
    }
    safety = outputs.get("safety", {})
    labels = [label for label in recipe.safety.models if label in safety]
    if labels:
        before, after = labels[0], labels[-1]
        res_before = _short_names(_read(safety[before]), "suites")
        res_after = _short_names(_read(safety[after]), "suites")
        result["safety"] = {
            "before": {"label": before, "results": res_before},
            # Models red-teamed between the first and the last (merged, when base comes first), in stage order.
            "between": [
                {"label": label, "results": _short_names(_read(safety[label]), "suites")} for label in labels[1:-1]
            ],
            "after": {"label": after, "results": res_after},
        }
        for key, name in (("bbq", "bias"), ("truthfulqa", "truthfulness")):
            if res_after and key in res_after:
                result[name] = {"before": (res_before or {}).get(key), "after": res_after[key]}
        risk = Path(safety[after]).with_name("risk.md")
        if risk.is_file():
            result["risk_markdown"] = risk.read_text(encoding="utf-8")
        result["safety_changes"] = _safety_changes({label: Path(safety[label]).parent for label in labels}, recipe.seed)
        result["impersonation"] = _impersonation({label: Path(safety[label]).parent for label in labels})
    result["comparisons"] = _comparisons(evals, recipe.seed)
    result["answer_distributions"] = _answer_distributions(evals)
    result["weight_change"] = _weight_changes(recipe, paths, loglik)
    return result


FORMULATIONS = ("loglik", "cloze", "generative")
"""The eval stage's outputs keyed by formulation, each ``{model label: results.json path}``."""


def _evaluated(evals: dict[str, Any], formulation: str) -> dict[str, Path]:
    """Model label -> evaluation folder (results.json and samples.jsonl), in recipe order."""
    results = evals.get(formulation) or {}
    return {label: Path(results[label]).parent for label in MODEL_STAGES if label in results}


def _comparisons(evals: dict[str, Any], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Per formulation: each evaluated model against the one before it (``kind: "step"``), then the last against
    the first (``kind: "overall"``), each ``{"before", "after", "kind"}`` plus :func:`compare_samples`'s result
    (or ``"error"``)."""

    from aloekit.evaluation.compare import compare_folders

    out: dict[str, list[dict[str, Any]]] = {}
    for formulation in FORMULATIONS:
        folders = _evaluated(evals, formulation)
        labels = [label for label, folder in folders.items() if (folder / "samples.jsonl").is_file()]
        entries = []
        for before, after, kind in _stage_pairs(labels):
            entry: dict[str, Any] = {"before": before, "after": after, "kind": kind}
            try:
                entry |= compare_folders(folders[before], folders[after], seed=seed)
            except UserError as e:
                entry["error"] = e.message
            except (KeyError, TypeError, ValueError) as e:  # a malformed samples file: say so, go on
                entry["error"] = f"malformed samples in {folders[before]} or {folders[after]}: {type(e).__name__}: {e}"
            entries.append(entry)
        if entries:
            out[formulation] = entries
    return out


def _stage_pairs(labels: list[str]) -> list[tuple[str, str, str]]:
    """Each model against the one before it ("step"), then the last against the first ("overall") when there
    are more than two."""
    from itertools import pairwise

    pairs = [(a, b, "step") for a, b in pairwise(labels)]
    if len(labels) > 2:
        pairs.append((labels[0], labels[-1], "overall"))
    return pairs


def _safety_samples(folder: Path) -> list[dict[str, Any]] | None:
    """A safety evaluation's per-prompt verdicts (samples.jsonl), or None when missing or malformed."""
    path = folder / "samples.jsonl"
    try:
        return [json.loads(line) for line in json_lines(path.read_text(encoding="utf-8")) if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _safety_changes(folders: dict[str, Path], seed: int) -> list[dict[str, Any]]:
    """Each red-teamed model against the one before it, then the last against the first (as :func:`_comparisons`),
    on the prompts both were judged on (:func:`compare_verdicts`), or ``"error"``."""

    from aloekit.evaluation.safety_compare import compare_verdicts

    out = []
    for before, after, kind in _stage_pairs(list(folders)):
        entry: dict[str, Any] = {"before": before, "after": after, "kind": kind}
        old, new = _safety_samples(folders[before]), _safety_samples(folders[after])
        if old is None or new is None:
            entry["error"] = f"no readable samples.jsonl in {folders[before]} or {folders[after]}"
        else:
            try:
                entry |= compare_verdicts(old, new, seed=seed)
            except (KeyError, TypeError, ValueError) as e:
                entry["error"] = f"malformed safety samples: {type(e).__name__}: {e}"
        out.append(entry)
    return out


def _impersonation(folders: dict[str, Path]) -> dict[str, Any]:
    """Per red-teamed model: the share of its replies claiming a clinical identity (the risk assessment's direct
    evidence of impersonation), so the report can assess risks from the summary alone."""
    from aloekit.evaluation.safety_compare import impersonation

    out = {}
    for label, folder in folders.items():
        samples = _safety_samples(folder)
        if samples:
            out[label] = impersonation(samples)
    return out


def _answer_distributions(evals: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per formulation, model and benchmark: predicted and gold answer distributions (:func:`answer_distributions`)."""
    import contextlib

    from aloekit.evaluation.compare import answer_distributions, read_samples

    out: dict[str, dict[str, Any]] = {}
    for formulation in FORMULATIONS:
        per_model = {}
        for label, folder in _evaluated(evals, formulation).items():
            results = _read(folder / "results.json")
            if not isinstance(results, dict):
                continue
            # samples.jsonl only for benchmarks whose results.json has no distribution (mixed option labels).
            samples: list[dict[str, Any]] = []
            if not all(r.get("predicted") for r in (results.get("benchmarks") or {}).values()):
                with contextlib.suppress(UserError):  # no or malformed samples: those benchmarks go without
                    samples = read_samples(folder)
            per_model[label] = answer_distributions(results, samples)
        if per_model:
            out[formulation] = per_model
    return out


def _weight_changes(recipe: RecipeConfig, paths: dict[str, str], loglik: dict[str, Any]) -> list[dict[str, Any]]:
    """Each recipe model's weights against the previous model's that exists (``{"before", "after"}`` plus
    :func:`relative_change`'s result, or ``"error"``)."""
    from itertools import pairwise

    from aloekit.evaluation.weights import relative_change

    folders = []
    for label in MODEL_STAGES:
        folder = _model_folder(recipe, label, paths[label], loglik) if label in paths else None
        if folder is not None:
            folders.append((label, folder))
    out = []
    for (before, old), (after, new) in pairwise(folders):
        entry: dict[str, Any] = {"before": before, "after": after}
        try:
            entry |= relative_change(old, new)
        except (UserError, OSError) as e:
            entry["error"] = e.message if isinstance(e, UserError) else f"cannot read the weights: {e}"
        out.append(entry)
    return out


def _model_folder(recipe: RecipeConfig, label: str, reference: str, loglik: dict[str, Any]) -> Path | None:
    """The local folder of a recipe model: the stage's folder, or for a base given as an alias or Hub id, the
    folder its evaluation loaded (else the one :func:`aloekit.models.resolve` finds). None when there is none."""
    if Path(reference).is_dir():
        return Path(reference)
    if label != "base":
        return None
    recorded = ((_read(loglik.get(label)) or {}).get("model") or {}).get("path")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    from aloekit import models

    try:
        resolved = models.resolve(
            reference, allow_pickle=recipe.models.allow_pickle, trust_remote_code=recipe.models.trust_remote_code
        )
        return resolved.path
    except UserError:
        return None


def _short_ladder(ladder: Any) -> Any:
    if not isinstance(ladder, dict):
        return ladder
    steps = [_short_names(step, "benchmarks") for step in ladder.get("steps", [])]
    names = [Path(b[5:]).stem if b.startswith("file:") else b for b in ladder.get("benchmarks", [])]
    return {**ladder, "steps": steps, "benchmarks": names}


def _stage_report(recipe: RecipeConfig, text: str, recipe_path: Path) -> Callable[[StageContext], dict[str, Any]]:
    def run(ctx: StageContext) -> dict[str, Any]:
        from aloekit.report.card import render_model_card
        from aloekit.report.html import write_report

        data = summary(recipe, text, recipe_path, dict(ctx.upstream))
        card = render_model_card(data)
        final = data["models"].get("final")
        outputs: dict[str, Any] = {}
        if final and Path(final).is_dir():
            # The card belongs next to the model it describes, where the Hub reads it.
            atomic_write_text(Path(final) / "README.md", card)
            outputs["model_card"] = str(Path(final) / "README.md")
        written = write_report(data, ctx.folder)
        atomic_write_text(ctx.folder / "summary.json", json.dumps(data, indent=2, default=str) + "\n")
        outputs.update({k: str(v) for k, v in written.items()})
        return outputs

    return run


# --- the run --------------------------------------------------------------------------------------------------


def build_stages(recipe: RecipeConfig, text: str, recipe_path: Path) -> list[Stage]:
    """The recipe's stages, each with its own config section (its input hash) and the stages it reads."""
    dump = recipe.model_dump(mode="json")
    common = {"seed": recipe.seed, "models": dump["models"], "data_dir": dump["data_dir"]}
    engine = {"engine": dump["engine"]}
    return [
        # Decontamination depends on what is evaluated (the names, not how many questions or which settings).
        Stage("data", _stage_data(recipe), {**common, "data": dump["data"], "evaluated": _evaluation_sets(recipe)}),
        Stage("sft", _stage_sft(recipe), {**common, "sft": dump["sft"], "launcher": dump["launcher"]}, ("data",)),
        Stage("merge", _stage_merge(recipe), {**common, "merge": dump["merge"]}, ("sft",)),
        Stage(
            "dpo", _stage_dpo(recipe), {**common, "dpo": dump["dpo"], "launcher": dump["launcher"]}, ("data", "merge")
        ),
        Stage("safety", _stage_safety(recipe), {**common, **engine, "safety": dump["safety"]}, ("merge", "dpo")),
        Stage("eval", _stage_eval(recipe), {**common, **engine, "eval": dump["eval"]}, ("data", "sft", "merge", "dpo")),
        Stage(
            "report",
            _stage_report(recipe, text, recipe_path),
            {"recipe": dump},
            ("data", "sft", "merge", "dpo", "safety", "eval"),
        ),
    ]


def run_recipe(
    recipe: RecipeConfig,
    text: str,
    recipe_path: Path,
    folder: Path,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) the recipe in ``folder``; return every stage's manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "recipe.yaml", text)
    atomic_write_text(folder / "recipe.resolved.json", json.dumps(recipe.model_dump(mode="json"), indent=2) + "\n")
    _preflight(recipe)
    stages = build_stages(recipe, text, recipe_path)
    return run_stages(stages, folder, seed=recipe.seed, from_stage=from_stage, only=only, log=log)


def _preflight(recipe: RecipeConfig) -> None:
    """Read the recipe's registered benchmarks and safety suites from the data folder now: a missing or malformed
    file fails in seconds, not after the training stages. (From the Hub they are read when evaluated.)"""
    if recipe.data_dir is None:
        return
    from aloekit.config import MCQAConfig
    from aloekit.evaluation.mcqa import load_benchmarks
    from aloekit.evaluation.redteam import load_suite

    registered = _registered_evals(recipe)
    if registered:
        load_benchmarks(MCQAConfig(benchmarks=tuple(registered), data_dir=recipe.data_dir))
    for suite in recipe.safety.suites:
        if not suite.startswith("file:"):
            load_suite(suite, recipe.data_dir)


def dry_run(recipe: RecipeConfig, folder: Path) -> list[dict[str, Any]]:
    """What ``aloe run`` would do, checked as far as it can be without data, models or GPUs: every stage's full
    config is built and validated (with the paths the run would use), accelerate configs are read, and the
    training commands are spelled out. Returns one row per stage."""
    from aloekit.merge.config import MergeConfig

    rows: list[dict[str, Any]] = []
    data = folder / "data"
    rows.append(
        {
            "stage": "data",
            "does": f"holdout of {len(recipe.data.holdout)} files, "
            * bool(recipe.data.holdout)
            + f"SFT mixture of {len(recipe.data.mixture.sources)} sources, preference pairs (general: "
            f"{_pref_parts(recipe.data.prefs_general)}; safety: {_pref_parts(recipe.data.prefs_safety)})"
            + (", Medprompt CoT database" if recipe.data.cot_db else ""),
            "data_dir": str(recipe.data_dir) if recipe.data_dir else "files named in the recipe, else the Hub",
        }
    )
    sft = _sft_config(recipe, str(data / "sft"), folder / "sft" / "train")
    dpo = _dpo_config(
        recipe, str(folder / "merge" / "model"), str(data / "prefs_general"), str(data / "prefs_safety"), folder
    )
    for name, config in (("sft", sft), ("dpo", dpo)):
        row: dict[str, Any] = {"stage": name, "model": config.model}
        if recipe.launcher.accelerate_config is not None:
            row["launch"] = _accelerate_summary(recipe) + f" -m aloekit.cli train {name} {folder / name / name}.yaml"
        else:
            row["launch"] = "in this process"
        processes = recipe.launcher.num_processes or 1
        if name == "sft":
            per_step = sft.per_device_batch_size * sft.gradient_accumulation * processes
            # Packed rows are known only after tokenizing: the count of conversations would overstate epochs.
            built = None if sft.packing else _rows(data / "sft" / "train.jsonl")
            length = training_length(sft.epochs, sft.max_steps, per_step, built)
            row["does"] = (
                f"{'LoRA' if sft.lora else 'full'} fine-tuning, {length}, lr {sft.learning_rate}, "
                f"max_length {sft.max_length}, packing {sft.packing}"
            )
        else:
            per_step = dpo.per_device_batch_size * dpo.gradient_accumulation * processes
            row["does"] = ", ".join(
                f"{s.name}: beta {s.beta}, lr {s.learning_rate}, "
                + training_length(s.epochs, s.max_steps, per_step, _rows(data / f"prefs_{s.name}" / "train.jsonl"))
                for s in dpo.stages
            )
        rows.append(row)
    spec = merge_config(recipe.merge, base=recipe.models.base, instruct=recipe.instruct, sft=sft.out.as_posix())
    merge = MergeConfig.model_validate(spec)
    rows.insert(2, {"stage": "merge", "does": f"{merge.merge_method} of {len(merge.models or [])} models"})
    rows.append(
        {
            "stage": "eval",
            "does": f"log-likelihood on {', '.join(recipe.eval.benchmarks)} for {', '.join(recipe.eval.models)}"
            + (f"; Medprompt on {recipe.eval.medprompt.model}" if recipe.eval.medprompt.enabled else ""),
            "engine": recipe.engine.backend,
        }
    )
    rows.append(
        {
            "stage": "safety",
            "does": f"{', '.join(recipe.safety.suites)} x {len(recipe.safety.styles)} styles on "
            f"{', '.join(recipe.safety.models)}, judge {recipe.safety.judge}",
            "engine": recipe.engine.backend,
        }
    )
    rows.append({"stage": "report", "does": f"{folder / 'report' / 'report.html'} and the model card"})
    return rows


def _rows(path: Path) -> int | None:
    """Rows of a built JSONL file, or None before the data stage has built it."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def training_length(epochs: float, max_steps: int | None, per_step: int, rows: int | None) -> str:
    """How long a training stage runs, as the trainer will: ``max_steps`` overrides ``epochs``, so with it set the
    epochs covered are steps x rows per step / rows (``0.67 epochs``), never the ignored setting (``1.0``)."""
    if max_steps is None:
        return f"{epochs:g} epochs"
    steps = f"{max_steps} steps of {per_step} rows"
    if rows:
        return f"{steps} = {max_steps * per_step / rows:.2f} epochs of {rows} rows"
    return f"{steps} (the epochs setting is ignored; epochs covered: known once the data is built and packed)"


def _pref_parts(config: Any) -> str:
    parts = [k for k in ("medical", "redteam", "benign") if getattr(config, k) is not None]
    return "+".join(parts + ["pairs"] * bool(config.pairs)) or "none"


def _accelerate_summary(recipe: RecipeConfig) -> str:
    """The accelerate launch command, after checking its config file reads as YAML with a distributed type."""
    path = recipe.launcher.accelerate_config
    assert path is not None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"launcher.accelerate_config {path}: cannot read it as YAML ({e})") from e
    if not isinstance(config, dict) or "distributed_type" not in config:
        raise UserError(f"launcher.accelerate_config {path}: not an accelerate config (no distributed_type)")
    processes = recipe.launcher.num_processes or config.get("num_processes")
    argv: Sequence[str] = ["accelerate", "launch", "--config_file", str(path)]
    if processes:
        argv = [*argv, "--num_processes", str(processes)]
    return f"[{config['distributed_type']}] " + shlex.join(argv)
