"""The offline demo: the embedded model answers medical questions, batched through the hf engine.

Until the full recipe (`aloe run recipes/demo.yaml`) exists, this is what `make demo` shows: a real model,
resolved from the PyPI wheel, converted once to safetensors, answering real prompts on this machine.
"""

from __future__ import annotations

import time

from aloekit.engines import GenerationRequest, load_engine
from aloekit.models import DEFAULT_MODEL

SYSTEM = "You are a careful medical assistant. Answer briefly and say when a clinician should be consulted."
QUESTIONS = (
    "What are the common symptoms of type 2 diabetes?",
    "What is the first thing to do for someone having a severe allergic reaction with trouble breathing?",
    "Why should antibiotics not be used to treat the common cold?",
)


def run(model: str = DEFAULT_MODEL, max_tokens: int = 96) -> list[tuple[str, str]]:
    """Answer :data:`QUESTIONS` greedily in one batch and return (question, answer) pairs."""
    engine = load_engine("hf", model, batch_size=len(QUESTIONS))
    requests = [
        GenerationRequest(
            messages=({"role": "system", "content": SYSTEM}, {"role": "user", "content": q}), max_tokens=max_tokens
        )
        for q in QUESTIONS
    ]
    answers = engine.generate(requests, progress=True)
    # Mark answers cut by the token limit, so a reader does not take a cut-off sentence for the model's end.
    return [
        (q, a.text.strip() + (" [...]" if a.finish_reasons[0] == "length" else ""))
        for q, a in zip(QUESTIONS, answers, strict=True)
    ]


def main(model: str = DEFAULT_MODEL, max_tokens: int = 96) -> None:
    from rich.console import Console
    from rich.panel import Panel

    console = Console()
    console.print(f"[bold]aloekit demo[/bold]: {model} (hf engine, greedy, {max_tokens} new tokens at most)")
    start = time.perf_counter()
    pairs = run(model, max_tokens)
    for q, a in pairs:
        console.print(Panel(a, title=q, title_align="left"))
    console.print(f"answered {len(pairs)} questions in {time.perf_counter() - start:.1f} s (model load included)")
    console.print("[dim]A 135M-parameter model: fluent, not reliable. Never use its answers for care.[/dim]")
