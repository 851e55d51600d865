"""The data stage: held-out evaluation files, the SFT mixture, both preference sets and Medprompt's database, each
decontaminated against everything the recipe evaluates on."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

from pydantic import Field

from aloekit.data.cot import explanation_cot, load_verified
from aloekit.data.decontaminate import DecontamConfig
from aloekit.data.mixture import build as build_mixture
from aloekit.data.mixture import load_entry
from aloekit.data.prefs_build import PrefsConfig, build_prefs
from aloekit.data.schema import MCQItem
from aloekit.data.tally import Tally
from aloekit.io import atomic_write_text
from aloekit.prompting.index import build_database
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.evalsets import decontaminated, eval_files, registered_evals
from aloekit.recipe.holdout import split_holdout
from aloekit.recipe.runner import JSONDict, StageContext, StageOutputs

__all__ = ["DataInputs", "DataOutputs", "build_prefs_once", "run"]

HOLDOUT = "holdout_"
"""Manifest key prefix of a held-out evaluation file (``holdout_<name>``)."""


@dataclass(frozen=True)
class DataInputs:
    recipe: RecipeConfig


class DataOutputs(StageOutputs):
    holdout: dict[str, Path] = Field(default_factory=dict)
    """data.holdout name -> its evaluation file (``<name>-eval.jsonl``)."""
    sft: Path
    prefs_general: Path | None
    """None when the DPO stage builds them from the merged model's answers (``data.general_on_policy``)."""
    prefs_safety: Path
    cot_db: Path | None = None
    letters: Path | None = None
    """The letter phase's mixture (``data.letters``), when the recipe has one."""

    def to_manifest(self) -> JSONDict:
        # Recorded flat (holdout_<name> keys), as run folders made before the typed stages record it.
        fields = self.model_dump(mode="json", exclude_none=True, exclude={"holdout"})
        return {**{HOLDOUT + name: str(path) for name, path in self.holdout.items()}, **fields}

    @classmethod
    def from_manifest(cls, outputs: Mapping[str, Any]) -> Self:
        holdout = {k.removeprefix(HOLDOUT): v for k, v in outputs.items() if k.startswith(HOLDOUT)}
        rest = {k: v for k, v in outputs.items() if not k.startswith(HOLDOUT)}
        return cls.model_validate({**rest, "holdout": holdout})


def run(inputs: DataInputs, ctx: StageContext) -> DataOutputs:
    recipe = inputs.recipe
    data = recipe.data
    progress = sys.stderr.isatty()
    holdout: dict[str, Path] = {}
    folder = ctx.folder / "holdout"
    for part in data.holdout:
        train_path, eval_path = folder / f"{part.name}-train.jsonl", folder / f"{part.name}-eval.jsonl"
        if not eval_path.is_file():
            train, held = split_holdout(part.path, part.fraction, part.seed, part.label, part.rename)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(train_path, "".join(f"{line}\n" for line in train))
            atomic_write_text(eval_path, "".join(f"{line}\n" for line in held))  # written last: the marker
            ctx.log(f"data: held out {len(held)} of {len(train) + len(held)} rows of {part.path}")
        holdout[part.name] = eval_path
    # Each part is written atomically: a part whose folder exists finished (the stage's folder only survives a kill
    # with the same inputs), so a resumed data stage continues with the next part.
    sft = ctx.folder / "sft"
    if not sft.is_dir():
        ctx.log("data: building sft")
        build_mixture(decontaminated(data.mixture, recipe), sft, progress=progress, log=ctx.log)
    letters = None
    if data.letters is not None:
        letters = ctx.folder / "letters"
        if not letters.is_dir():
            ctx.log("data: building letters")
            build_mixture(decontaminated(data.letters, recipe), letters, progress=progress, log=ctx.log)
    general = None
    if data.general_on_policy:
        ctx.log("data: prefs_general will be built by the dpo stage, from the merged model's own answers")
    else:
        general = build_prefs_once(ctx.folder / "prefs_general", data.prefs_general, recipe, ctx, progress)
    safety = build_prefs_once(ctx.folder / "prefs_safety", data.prefs_safety, recipe, ctx, progress)
    cot_db = None
    if data.cot_db is not None:
        cot_db = ctx.folder / "cot_db"
        if not (cot_db / "manifest.json").is_file():
            ctx.log("data: building the Medprompt chain-of-thought database")
            _build_cot_db(recipe, cot_db)
    return DataOutputs(
        holdout=holdout,
        sft=sft,
        prefs_general=general,
        prefs_safety=safety,
        cot_db=cot_db,
        letters=letters,
    )


def build_prefs_once(out: Path, config: PrefsConfig, recipe: RecipeConfig, ctx: StageContext, progress: bool) -> Path:
    """``out``, with the pairs of ``config`` built into it unless a finished build is there (written atomically)."""
    if not out.is_dir():
        ctx.log(f"{ctx.folder.name}: building {out.name}")
        build_prefs(decontaminated(config, recipe), out, progress=progress, log=ctx.log)
    return out


def _build_cot_db(recipe: RecipeConfig, out: Path) -> None:
    """Medprompt's few-shot database: verified chain-of-thought files, and MCQs whose explanation reaches the key."""
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
    registered = registered_evals(recipe)
    decontamination = DecontamConfig(
        exclude=settings.exclude, extra=tuple(eval_files(recipe)), benchmarks=tuple(registered) or None
    )
    build_database(
        items, out, embedder=settings.embedder, decontamination=decontamination, data_dir=recipe.data_dir, sources=used
    )
