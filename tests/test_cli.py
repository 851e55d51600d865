"""Specification of the ``aloe`` command, run for real in subprocesses: output contracts and one-line errors."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import aloe, assert_one_line_error

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_module_runs_as_the_aloe_command() -> None:
    result = aloe("--help")

    assert result.returncode == 0, result.stderr
    assert "models" in result.stdout
    assert "generate" in result.stdout


def test_models_info_json_prints_one_object_whose_path_is_the_model_folder(tiny_llama: Path) -> None:
    result = aloe("models", "info", str(tiny_llama), "--json")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    described = json.loads(result.stdout)
    assert described["path"] == str(tiny_llama.resolve())
    assert Path(described["path"], "config.json").is_file()
    assert described["source"] == "folder"
    assert described["architecture"] == "LlamaForCausalLM"
    assert described["chat_template"] is True


def test_models_info_table_names_the_architecture(tiny_llama: Path) -> None:
    result = aloe("models", "info", str(tiny_llama))

    assert result.returncode == 0, result.stderr
    assert "LlamaForCausalLM" in result.stdout
    assert "safetensors" in result.stdout
    assert result.stderr == ""


def test_models_info_on_a_folder_imports_neither_torch_nor_transformers(tiny_llama: Path) -> None:
    script = (
        "import sys\n"
        "from aloekit.cli import main\n"
        f"code = main(['models', 'info', {str(tiny_llama)!r}, '--json'])\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "sys.exit(f'imported {heavy}' if heavy else code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


def test_models_info_resolves_a_hub_id_from_the_cache_named_by_hf_hub_cache(tiny_llama: Path, tmp_path: Path) -> None:
    storage = tmp_path / "hf-cache" / "models--org--name"
    shutil.copytree(tiny_llama, storage / "snapshots" / COMMIT)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)

    result = aloe("models", "info", "org/name", "--json", env={"HF_HUB_CACHE": str(tmp_path / "hf-cache")})

    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["source"] == "hub"
    assert Path(described["path"]).resolve() == (storage / "snapshots" / COMMIT).resolve()


def test_a_hub_id_missing_from_the_cache_offline_is_a_one_line_error(tmp_path: Path) -> None:
    result = aloe("models", "info", "org/absent", env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")})

    line = assert_one_line_error(result, "org/absent")
    assert "offline" in line


@pytest.mark.parametrize("ref", ["no-such-model", "./no/such/folder"])
def test_an_unknown_model_reference_is_a_one_line_error(tmp_path: Path, ref: str) -> None:
    result = aloe("models", "info", ref, cwd=tmp_path)

    assert_one_line_error(result, f"'{ref}'", "unknown model reference")


def test_a_missing_gguf_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"

    result = aloe("models", "info", str(missing))

    assert_one_line_error(result, str(missing), "not found")


def test_a_pickle_only_checkpoint_is_a_one_line_error_without_allow_pickle(pickle_folder: Path) -> None:
    result = aloe("models", "info", str(pickle_folder))

    assert_one_line_error(result, str(pickle_folder), "--allow-pickle")

    allowed = aloe("models", "info", str(pickle_folder), "--allow-pickle", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["weights_format"] == "pickle"


def test_a_pickle_file_passed_directly_is_a_one_line_error(pickle_folder: Path) -> None:
    checkpoint = pickle_folder / "pytorch_model.bin"

    result = aloe("models", "info", str(checkpoint))

    assert_one_line_error(result, str(checkpoint), "pickle")


def test_generate_raw_json_prints_the_texts(tiny_llama: Path) -> None:
    result = aloe("generate", "--model", str(tiny_llama), "--raw", "--max-tokens", "4", "--json", "The patient")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    output = json.loads(result.stdout)
    assert output["backend"] == "hf"
    assert isinstance(output["texts"], list)
    assert len(output["texts"]) == 1
    assert isinstance(output["texts"][0], str)
    assert output["prompt_tokens"] > 0
    assert len(output["completion_tokens"]) == len(output["finish_reasons"]) == 1
    assert 0 < output["completion_tokens"][0] <= 4


def test_generate_refuses_raw_together_with_system_in_one_line(tiny_llama: Path) -> None:
    result = aloe("generate", "--model", str(tiny_llama), "--raw", "--system", "Be brief.", "The patient")

    assert_one_line_error(result, "--raw", "--system")
    assert result.stdout == ""


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.slow
def test_models_info_on_the_embedded_alias_is_fast_once_converted(smollm2_path: Path) -> None:
    # ALOE_HOME is inherited unchanged, so the command hits the same cache the fixture filled.
    first = aloe("models", "info", "smollm2-135m-instruct")
    assert first.returncode == 0, first.stderr
    assert "LlamaForCausalLM" in first.stdout

    # The command's CPU time, not wall time: a loaded machine (a recipe beside the tests) stretches wall time.
    start = _children_cpu_seconds()
    second = aloe("models", "info", "smollm2-135m-instruct", "--json")
    elapsed = _children_cpu_seconds() - start

    assert second.returncode == 0, second.stderr
    described = json.loads(second.stdout)
    assert described["path"] == str(smollm2_path)
    assert described["source"] == "alias"
    assert described["vocab_size"] == 49152
    assert elapsed < 5, f"a cached `aloe models info` took {elapsed:.1f} s of CPU"


def test_a_command_under_a_launcher_leaves_no_process_group_behind(tmp_path: Path) -> None:
    """Gloo's threads left to interpreter exit can abort a finished process (SIGABRT): main() tears the group down."""
    import torch.distributed as dist

    from aloekit.cli.main import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["models", "--help"]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
