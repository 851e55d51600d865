"""Copy a run's prefs_safety data config into hf and llamacpp variants (responders' engine only differs)."""

import copy
import sys
from pathlib import Path

import yaml

src, out_dir = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(Path(src).read_text())


def walk(node, backend):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("responder", "policy") and isinstance(value, dict):
                value["backend"] = backend
                value["batch_size"] = 32 if backend == "llamacpp" else 16
                value["dtype"] = "bfloat16"
            else:
                walk(value, backend)
    elif isinstance(node, list):
        for item in node:
            walk(item, backend)


for backend in ("hf", "llamacpp"):
    c = copy.deepcopy(cfg)
    walk(c, backend)
    Path(f"{out_dir}/prefs-{backend}.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    print(backend, "written")
