"""How the training stages run: in this process, or as ``aloe train COMMAND CONFIG`` under ``accelerate launch``
with the recipe's accelerate config (multi-GPU, DeepSpeed/FSDP)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from aloekit.errors import UserError
from aloekit.io import atomic_write_text
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.runner import StageContext
from aloekit.train.dpo import DPORunConfig
from aloekit.train.sft import SFTRunConfig

__all__ = ["train"]


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


def train(
    recipe: RecipeConfig,
    ctx: StageContext,
    command: str,
    config: SFTRunConfig | DPORunConfig,
    here: Callable[[bool], object],
    name: str | None = None,
) -> None:
    """Train ``config`` in this process (``here(resume)``) or under ``accelerate launch`` (its config written to
    ``<name or command>.yaml`` in the stage's folder); a run folder that already holds work (a killed attempt with
    the same inputs) is resumed from its last checkpoint."""
    resume = config.out.is_dir() and any(config.out.iterdir())
    if recipe.launcher.accelerate_config is None:
        here(resume)
        return
    path = ctx.folder / f"{name or command}.yaml"
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    _launch(recipe, command, path, resume, ctx.log)
