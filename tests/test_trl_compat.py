"""The private TRL / transformers / datasets internals aloekit.train.trl_compat relies on are still there.

Each test names the private function, attribute, signature or call site one patch needs. A library upgrade that
moves one fails here, by name, instead of silently turning a patch into a no-op (slower training, a reference pass
that is no longer cached) or into a wrong result. After an upgrade: re-read each patch against the new source, fix
what moved, and bump ``trl_compat.CHECKED``.
"""

from __future__ import annotations

import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from aloekit.train import refcache, trl_compat


def _source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


@pytest.mark.parametrize("package", sorted(trl_compat.CHECKED))
def test_the_installed_versions_are_the_ones_the_patches_were_checked_against(package: str) -> None:
    installed = metadata.version(package)
    assert installed == trl_compat.CHECKED[package], (
        f"{package} {installed} is installed, trl_compat was checked against {trl_compat.CHECKED[package]}: "
        "re-read every patch in src/aloekit/train/trl_compat.py against it, then bump CHECKED"
    )


def test_the_lm_head_switch_exists_where_the_gather_reads_it_and_the_patch_restores_it() -> None:
    import torch
    from trl.trainer import utils

    original = utils._use_triton
    assert _parameters(original) == ["device"]
    # The gather of trained positions reads the name bound in trl.trainer.utils (what the patch replaces).
    assert re.search(r"\b_use_triton\(", _source(utils).split("def ", 1)[1])
    cpu = torch.device("cpu")
    assert original(cpu) is False
    with trl_compat.score_trained_positions_only():
        assert utils._use_triton(cpu) is True
    assert utils._use_triton is original


def test_dpo_hashes_its_reference_with_hash_module_looked_up_in_its_own_module() -> None:
    from trl.trainer import dpo_trainer

    original = dpo_trainer.hash_module
    assert _parameters(original) == ["module"]
    assert "hash_module(" in _source(dpo_trainer.DPOTrainer.__init__)
    with trl_compat.reference_hash("fingerprint"):
        assert dpo_trainer.hash_module(None) == "fingerprint"
    assert dpo_trainer.hash_module is original


def test_the_reference_pass_names_its_cache_file_through_the_private_dataset_method(tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import DPOTrainer

    assert _parameters(Dataset._get_cache_file_path) == ["self", "fingerprint"]
    assert "_get_cache_file_path" in _source(DPOTrainer._precompute_ref_logps)
    dataset = Dataset.from_dict({"x": [1, 2]})
    assert not dataset.cache_files  # held in memory: the case the patch is for
    assert trl_compat.shared_cache_path(dataset, tmp_path, 1) is dataset
    assert dataset._get_cache_file_path("f") != str(tmp_path / "cache-f.arrow")  # one process: left alone
    trl_compat.shared_cache_path(dataset, tmp_path, 2)
    assert dataset._get_cache_file_path("f") == str(tmp_path / "cache-f.arrow")


def test_dpo_trainer_overrides_match_the_private_methods_they_replace() -> None:
    from transformers import Trainer
    from trl import DPOTrainer

    assert _parameters(Trainer._get_train_sampler) == ["self", "train_dataset"]
    assert "sampler_fn=self._get_train_sampler" in _source(Trainer.get_train_dataloader)
    assert _parameters(DPOTrainer._precompute_ref_logps) == ["self", "dataset", "name", "batch_size"]
    assert "self._precompute_ref_logps(" in _source(DPOTrainer.__init__)
    # refcache appends the same columns TRL's pass returns and its loss reads.
    precompute = _source(DPOTrainer._precompute_ref_logps)
    assert all(column in precompute for column in refcache.COLUMNS)
    trainer = trl_compat.dpo_trainer_class()
    assert issubclass(trainer, DPOTrainer)
    assert {"_get_train_sampler", "_precompute_ref_logps", "compute_loss"} <= set(vars(trainer))


def test_dpo_dataset_preparation_needs_only_what_the_stand_in_trainer_gives() -> None:
    from trl import DPOTrainer

    prepare = DPOTrainer._prepare_dataset
    assert _parameters(prepare) == ["self", "dataset", "processing_class", "args", "dataset_name"]
    source = _source(prepare)
    assert set(re.findall(r"self\.(\w+)", source)) == {"_tokenizer"}
    assert set(re.findall(r"args\.(\w+)", source)) == {"dataset_num_proc", "max_length", "truncation_mode"}


def test_the_sft_advice_silenced_is_still_worded_as_matched() -> None:
    from trl.trainer import sft_trainer

    assert trl_compat._NotBatchOfOneAdvice.ADVICE in _source(sft_trainer)


def test_sft_packing_check_and_messages_use_names_that_still_exist() -> None:
    from transformers import LlamaConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    )
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert hasattr(LlamaConfig(), "_attn_implementation")


def test_gradient_checkpointing_goes_by_its_transformers_5_name() -> None:
    from trl import DPOConfig, SFTConfig

    for config in (SFTConfig, DPOConfig):
        assert trl_compat.checkpointing_arg(config, False) == {"activation_checkpointing": False}
