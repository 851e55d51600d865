"""DARE-TIES merge of three SmolLM2-135M variants with mergekit 0.1.5 and with aloekit, in one run.

Anchor: `mergekit-yaml` 0.1.5 from its own venv (.venv-mergekit, made by `make install`).
Ours: `aloe merge` on the same YAML and the same input folders.
Each tool runs in its own process; wall-clock time and peak resident memory (the child's ru_maxrss) are measured
around the whole command, model loading and writing included. The variants are the embedded SmolLM2 plus two
copies with seeded Gaussian noise (a stand-in for fine-tuned models: same architecture, different weights).

    make bench-merge     # or: HF_HUB_OFFLINE=1 .venv/bin/python bench/merge.py

Rewrites the ``merge`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from engine import record

ROOT = Path(__file__).resolve().parents[1]
MERGEKIT = ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"

# Measures one command: runs it as the only child, then reports the child's peak RSS in KiB.
PEAK = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); r = subprocess.run(sys.argv[1:])\n"
    "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)

CONFIG = """\
merge_method: dare_ties
base_model: {base}
models:
  - model: {a}
    parameters:
      weight: 0.5
      density: 0.5
  - model: {b}
    parameters:
      weight: 0.5
      density: 0.5
parameters:
  int8_mask: true
dtype: float32
"""


def make_variant(source: Path, target: Path, seed: int, scale: float = 0.01) -> None:
    """A copy of ``source`` whose weights carry seeded noise of ``scale`` times each tensor's std."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "aloe_source.json"))
    generator = torch.Generator().manual_seed(seed)
    for shard in source.glob("*.safetensors"):
        tensors = load_file(shard)
        noisy = {
            k: v + torch.randn(v.shape, generator=generator) * (scale * float(v.float().std() or 1.0))
            for k, v in tensors.items()
        }
        save_file(noisy, target / shard.name, metadata={"format": "pt"})


def measure(command: list[str]) -> tuple[float, float]:
    """(seconds, peak GiB) of ``command``; raises if it fails."""
    out = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
    code, seconds, kib = out.stdout.split()[-3:]
    if int(code) != 0:
        raise SystemExit(f"{command[0]} failed ({code}): {out.stderr[-2000:]}")
    return float(seconds), int(kib) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not MERGEKIT.exists():
        raise SystemExit(f"{MERGEKIT} not found: run `make install` (it creates .venv-mergekit with mergekit 0.1.5)")
    base = models.resolve(models.DEFAULT_MODEL).path
    aloe = str(Path(sys.executable).with_name("aloe"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, seed in (("a", 1), ("b", 2)):
            make_variant(base, work / name, seed)
        config = work / "dare_ties.yml"
        config.write_text(CONFIG.format(base=base, a=work / "a", b=work / "b"))
        rows = []
        # Each tool twice, alternating, so neither always runs on a warmer page cache; the best run counts.
        runs: dict[str, list[tuple[float, float]]] = {"mergekit": [], "aloekit": []}
        for rep in range(2):
            out_mk, out_al = work / f"mk{rep}", work / f"al{rep}"
            runs["mergekit"].append(measure([str(MERGEKIT), str(config), str(out_mk), "--random-seed", "0"]))
            runs["aloekit"].append(measure([aloe, "merge", str(config), str(out_al), "--seed", "0"]))
            shutil.rmtree(out_mk)
            shutil.rmtree(out_al)
        for tool, values in runs.items():
            seconds = min(s for s, _ in values)
            peak = max(p for _, p in values)
            rows.append((tool, seconds, peak))
            print(tool, values, flush=True)
    (_, mk_s, mk_p), (_, al_s, al_p) = rows
    table = "\n".join(
        [
            "| tool | seconds (best of 2) | peak memory GiB (max of 2) | time vs mergekit | memory vs mergekit |",
            "|---|---:|---:|---:|---:|",
            f"| anchor: mergekit-yaml 0.1.5 | {mk_s:.1f} | {mk_p:.2f} | 1.00x | 1.00x |",
            f"| ours: aloe merge | {al_s:.1f} | {al_p:.2f} | {al_s / mk_s:.2f}x | {al_p / mk_p:.2f}x |",
        ]
    )
    print(table)
    if not args.no_record:
        record(
            "merge",
            "## DARE-TIES merge of three SmolLM2-135M variants: `bench/merge.py`\n\n"
            f"Command: `make bench-merge` (= `HF_HUB_OFFLINE=1 .venv/bin/python bench/merge.py`), "
            f"{time.strftime('%Y-%m-%d')}. fp32 inputs (3 x 538 MB safetensors), `dare_ties` with weight 0.5 and "
            "density 0.5 for two models over the base, int8_mask, float32 output; each tool in its own process, "
            "wall clock and peak RSS of the whole command, both measured in the same run.\n\n"
            f"{table}\n\nEvery run (seconds, peak GiB): "
            + "; ".join(f"{tool} {[(round(a, 1), round(b, 2)) for a, b in v]}" for tool, v in runs.items())
            + ".\n",
        )
        print("recorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
