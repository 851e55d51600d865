"""``aloe export ...``: wiring for model exports (GGUF for llama.cpp, Ollama and LM Studio)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

export_app = typer.Typer(help="Export a model to formats other tools run (GGUF).", no_args_is_help=True)


@export_app.command("gguf")
def gguf(
    model: Annotated[str, typer.Argument(help="Model folder (safetensors), alias or Hub id to export.")],
    out: Annotated[
        Path, typer.Option("--out", help="The .gguf file to write (atomically); a Modelfile goes next to it.")
    ],
    quant: Annotated[
        str,
        typer.Option(
            help="f16 (exact), bf16 (exact for a bf16 model; fast on CPUs with AVX512-BF16), q8_0 (half the size, "
            "near-exact) or q4_k_m (llama.cpp's; needs llama-cpp-python)."
        ),
    ] = "f16",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file and Modelfile.")] = False,
    threads: Annotated[int | None, typer.Option(help="q4_k_m: quantizer threads (default: every CPU).")] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle weights (.bin/.pt), which can run code on load.")
    ] = False,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Run the model's own Python code (config auto_map).")
    ] = False,
) -> None:
    """Write MODEL as one GGUF file with its tokenizer and chat template, plus an Ollama Modelfile."""
    from aloekit.export.gguf import export_gguf

    result = export_gguf(
        model,
        out,
        quant=quant,
        force=force,
        threads=threads,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    size = result.path.stat().st_size / 2**20
    typer.echo(f"wrote {result.path} ({result.architecture}, {result.quant}, {result.tensors} tensors, {size:.1f} MiB)")
    note = "" if result.template_translated else " (no TEMPLATE: Ollama uses the chat template stored in the GGUF)"
    typer.echo(f"wrote {result.modelfile}{note}; run it with: ollama create NAME -f {result.modelfile}")
