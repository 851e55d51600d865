"""``aloe train ...``: wiring for the training stages (SFT, DPO). Each command reads a YAML config, calls the
library function that does the work and prints a summary table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from aloekit.cli.options import log

train_app = typer.Typer(
    help="Training: supervised fine-tuning (sft) and preference alignment (dpo), thin wrappers over TRL.",
    no_args_is_help=True,
)

Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the run in the config's out folder from its last checkpoint.")
]
DebugTokens = Annotated[
    int | None,
    typer.Option(
        "--debug-tokens", min=1, help="Print the first N samples' tokens (trained ones in square brackets) and exit."
    ),
]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", min=1, help="Override the config's max_steps.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def _print_tokens(samples: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    console.print("tokens in [brackets] (green) are trained; the others are context (label -100)", markup=False)
    for sample in samples:
        length = sample.get("length", len(sample["tokens"]))
        trained = sample.get("trained", sum(1 for _, keep in sample["tokens"] if keep))
        console.print(Text(f"── {sample.get('id', '?')}: {length} tokens, {trained} trained", style="bold"))
        text = Text()
        for token, trained in sample["tokens"]:
            shown = token.replace("\n", "↵\n")
            if trained:
                text.append(f"[{shown}]", style="green")
            else:
                text.append(shown, style="dim")
        console.print(text)


def _print_summary(metrics: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key in (
        "steps",
        "epochs",
        "train_loss",
        "eval_loss_before",
        "eval_loss",
        "tokens_per_second",
        "train_seconds",
        "resumed_from",
        "processes",
        "model",
        "out",
    ):
        value = metrics.get(key)
        if value is None:
            continue
        table.add_row(key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value))
    Console(stderr=True).print(table)


@train_app.command("sft")
def sft(
    config: Annotated[Path, typer.Argument(help="SFT config YAML (model, dataset, out, lora, schedule...).")],
    resume: Resume = False,
    debug_tokens: DebugTokens = None,
    max_steps: MaxSteps = None,
    quiet: Quiet = False,
) -> None:
    """Supervised fine-tuning with loss on the assistant's tokens, packing, checkpoints and a model export."""
    from aloekit.config import load_yaml
    from aloekit.train.sft import SFTRunConfig, train_sft

    cfg = load_yaml(config, SFTRunConfig, what="SFT config")
    if max_steps is not None:
        cfg = cfg.model_copy(update={"max_steps": max_steps})
    metrics = train_sft(cfg, resume=resume, debug_tokens=debug_tokens, progress=not quiet, log=log)
    if metrics.get("status") == "debug":
        _print_tokens(metrics["samples"])
        return
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, the first process reports
        _print_summary(metrics, "SFT finished")


@train_app.command("dpo")
def dpo(
    config: Annotated[Path, typer.Argument(help="DPO config YAML.")],
    resume: Resume = False,
    debug_tokens: DebugTokens = None,
    quiet: Quiet = False,
) -> None:
    """Direct preference optimisation on chosen/rejected pairs (the Aloe recipe's alignment stages)."""
    from aloekit.config import load_yaml
    from aloekit.train.dpo import DPORunConfig, train_dpo

    cfg = load_yaml(config, DPORunConfig, what="DPO config")
    metrics = train_dpo(cfg, resume=resume, debug_tokens=debug_tokens, progress=not quiet)
    if not isinstance(metrics, dict):
        return
    if metrics.get("status") == "debug":
        samples = metrics.get("samples")
        if isinstance(samples, list) and all(isinstance(s, dict) and "tokens" in s for s in samples):
            _print_tokens(samples)
        elif samples is not None:
            typer.echo(json.dumps(samples, indent=2, ensure_ascii=False))
        return
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(metrics, "DPO finished")
