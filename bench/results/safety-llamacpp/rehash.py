"""Benchmark helper: mark a copied run's finished stages as finished under the current code's config hashes.

New config fields with defaults change a stage's input hash, not its models; this lets ``aloe run --only`` measure a
later stage on an earlier run's models. Manifest files are replaced, not edited (hard links to the original run stay
intact).

    .venv/bin/python bench/results/safety-llamacpp/rehash.py RECIPE RUN data,sft,merge,dpo
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from aloekit.recipe import load_recipe
from aloekit.recipe.run import build_stages
from aloekit.recipe.runner import _digest


def main() -> None:
    recipe_path, run, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
    recipe, text, _ = load_recipe(recipe_path, run=run, data_dir=Path("/work/shared/data"))
    for stage in build_stages(recipe, text, recipe_path):
        if stage.name not in names:
            continue
        manifest = json.loads((run / stage.name / "manifest.json").read_text())
        reads = {r: json.loads((run / r / "manifest.json").read_text())["output_hash"] for r in stage.reads}
        new = _digest({"config": stage.config, "upstream": reads, "seed": recipe.seed})
        print(stage.name, manifest["input_hash"][:12], "->", new[:12])
        manifest["input_hash"] = new
        tmp = run / stage.name / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, run / stage.name / "manifest.json")


if __name__ == "__main__":
    main()
