"""``aloe merge``: merge models with a mergekit config, streaming shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aloekit.cli.options import AllowPickle, TrustCode


def merge_(
    config: Annotated[Path, typer.Argument(help="mergekit YAML (accepted as is), plus optional 'aloekit:' keys.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the merged model (written atomically).")],
    device: Annotated[
        str | None, typer.Option(help="Where the tensor math runs: cpu or cuda (default: the YAML's, else cpu).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for random methods (DARE); default: the YAML's or 0.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty OUT_DIR.")] = False,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustCode = False,
) -> None:
    """Merge models with a mergekit config (DARE-TIES, TIES, linear, task arithmetic, SLERP, ...), streaming."""
    # Deferred: merging imports torch and safetensors.
    from aloekit.merge.run import merge

    path = merge(
        config,
        out_dir,
        device=device,
        seed=seed,
        overwrite=overwrite,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(f"merged model written to {path}")
