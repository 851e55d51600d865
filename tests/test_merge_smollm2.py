"""The embedded SmolLM2-135M and two variants of it made here, merged by mergekit 0.1.5 and by aloekit: every
output tensor agrees within 1e-6 (fp32), for each deterministic method."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aloekit.merge import run

MERGEKIT_YAML = Path(os.environ.get("MERGEKIT_YAML", Path(__file__).parents[1] / ".venv-mergekit/bin/mergekit-yaml"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MERGEKIT_YAML.exists(), reason="mergekit 0.1.5 venv not installed (make install)"),
]

METHODS = {
    "linear": "models:\n  - model: {a}\n    parameters: {{weight: 0.7}}\n"
    "  - model: {b}\n    parameters: {{weight: 0.3}}\n",
    "task_arithmetic": "base_model: {base}\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.8}}\n"
    "  - model: {b}\n    parameters: {{weight: [0.2, 0.6]}}\n",
    "ties": "base_model: {base}\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5, density: 0.6}}\n"
    "  - model: {b}\n    parameters: {{weight: 0.5, density: 0.4}}\n",
    "breadcrumbs": "base_model: {base}\nmodels:\n"
    "  - model: {a}\n    parameters: {{weight: 0.5, density: 0.8, gamma: 0.02}}\n"
    "  - model: {b}\n    parameters: {{weight: 0.5, density: 0.7, gamma: 0.01}}\n",
    "slerp": "base_model: {a}\nmodels:\n  - model: {a}\n  - model: {b}\nparameters:\n  t: [0.1, 0.5, 0.9]\n",
    "model_stock": "base_model: {base}\nmodels:\n  - model: {a}\n  - model: {b}\n",
}


@pytest.fixture(scope="module")
def variants(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded model as the base, and two copies with seeded noise (stand-ins for fine-tuned models)."""
    root = tmp_path_factory.mktemp("smollm2-variants")
    out = {"base": smollm2_path}
    for name, seed in (("a", 1), ("b", 2)):
        target = root / name
        shutil.copytree(smollm2_path, target, ignore=shutil.ignore_patterns("*.safetensors", "aloe_source.json"))
        generator = torch.Generator().manual_seed(seed)
        tensors = load_file(smollm2_path / "model.safetensors")
        noisy = {k: v + 0.01 * float(v.std()) * torch.randn(v.shape, generator=generator) for k, v in tensors.items()}
        save_file(noisy, target / "model.safetensors", metadata={"format": "pt"})
        out[name] = target
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_merging_smollm2_variants_gives_mergekits_tensors(method: str, variants: dict[str, Path], tmp_path: Path):
    config = tmp_path / f"{method}.yml"
    config.write_text(f"merge_method: {method}\n" + METHODS[method].format(**variants) + "dtype: float32\n")
    theirs, ours = tmp_path / "mergekit", tmp_path / "aloekit"
    done = subprocess.run([str(MERGEKIT_YAML), str(config), str(theirs)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    run.merge(config, ours, progress=False)
    expected, got = load_file(theirs / "model.safetensors"), load_file(ours / "model.safetensors")
    assert set(got) == set(expected)
    worst = max(float((got[k] - v).abs().max()) for k, v in expected.items())
    assert worst <= 1e-6, (method, worst)
