"""Every place aloekit's trainers reach into TRL's, transformers' or datasets' private internals, in one module.

The rest of ``aloekit.train`` uses the libraries' public API only. Each patch below says what it changes, why, and
the version it was checked against (:data:`CHECKED`). ``tests/test_trl_compat.py`` asserts that the private names,
signatures and call sites these patches rely on still exist, so an upgrade that moves one fails there, naming it,
instead of silently changing speed or results (or, worse, making a patch a no-op).

torch, TRL, transformers and datasets are imported inside the functions: this module is imported by the trainer
builders only, and importing those libraries takes seconds that ``aloe --help`` should not pay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aloekit.train import refcache
from aloekit.train.packing import grouped_order

CHECKED = {"trl": "1.16.0", "transformers": "5.24.0", "datasets": "5.2.0"}
"""The versions every patch here was read against and tested with. Bump after re-reading each patch's target."""


# --- TRL: trl.trainer.utils._use_triton (checked on TRL 1.16.0) ---------------------------------------------------


@contextlib.contextmanager
def score_trained_positions_only() -> Iterator[None]:
    """Project only the trained positions (labels not -100) through the LM head, on CPU as TRL does on CUDA.

    TRL's fused LM head (``fused_lm_head=True``) gathers the positions whose label is not -100 before the
    vocabulary projection only on Triton devices; elsewhere it keeps tile shapes fixed for compilers (Neuron) and
    projects every prompt and padding position through the 49k-wide head, then discards them. Eager CPU has no
    compiled shapes to protect. The completions' log-probs are the same rows of the same product; only the
    discarded work goes: about a fifth of a DPO step on SmolLM2, whose prompts are half the tokens, and about a
    third of an answer-only SFT step, where one answer letter follows a whole question.

    Patches the name ``_use_triton`` that ``trl.trainer.utils`` imported from ``trl.kernels.chunked_logprob``: only
    the LM-head gather there reads it, the kernels keep their own binding."""
    from trl.trainer import utils

    original = getattr(utils, "_use_triton", None)
    if original is None:  # a TRL without the switch keeps its own behaviour; only speed depends on it
        yield
        return
    utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        utils._use_triton = original


# --- TRL: trl.trainer.dpo_trainer.hash_module (checked on TRL 1.16.0) ---------------------------------------------


@contextlib.contextmanager
def reference_hash(fingerprint: str) -> Iterator[None]:
    """With precompute_ref_log_probs, DPOTrainer.__init__ hashes every weight of the reference in memory (TRL's
    ``hash_module``, looked up in ``trl.trainer.dpo_trainer``) to key its own datasets cache; the weights files'
    fingerprint is already known, so use it."""
    from trl.trainer import dpo_trainer

    original = getattr(dpo_trainer, "hash_module", None)
    if original is None:
        yield
        return
    dpo_trainer.hash_module = lambda module: fingerprint
    try:
        yield
    finally:
        dpo_trainer.hash_module = original


# --- datasets: Dataset._get_cache_file_path (checked on datasets 5.2.0, TRL 1.16.0) -------------------------------


def shared_cache_path(dataset: Any, folder: Path, num_processes: int) -> Any:
    """``dataset``, with its cache files written where every process can read them.

    TRL's reference pass has the main process write the values to ``dataset._get_cache_file_path(fingerprint)``
    and every process read that file back. For a dataset held in memory (ours: pairs read from JSONL) that path is
    a random name in a temporary folder private to each process, so under ``accelerate launch`` the other ranks
    find nothing (FileNotFoundError) the first time a stage runs. The stage folder is shared by every rank, and
    the fingerprint TRL passes is broadcast from rank 0, so every rank names the same file there.
    """
    if num_processes <= 1 or dataset.cache_files:
        return dataset
    folder.mkdir(parents=True, exist_ok=True)
    dataset._get_cache_file_path = lambda fingerprint: str(folder / f"cache-{fingerprint}.arrow")
    return dataset


# --- TRL: DPOTrainer._prepare_dataset called without a trainer (checked on TRL 1.16.0) ----------------------------


def prepare_dpo_dataset(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """``dataset`` (prompt, chosen, rejected) tokenized, truncated and filtered exactly as DPOTrainer does it
    (chat template, prompt/completion split, pairs whose prompt fills ``max_length`` dropped), without loading a
    model: TRL's own ``_prepare_dataset`` with a stand-in for the trainer. It reads ``self._tokenizer`` and, from
    the config, ``dataset_num_proc``, ``max_length`` and ``truncation_mode``."""
    from trl import DPOTrainer

    settings = SimpleNamespace(dataset_num_proc=None, max_length=max_length, truncation_mode="keep_start")
    trainer = SimpleNamespace(_tokenizer=tokenizer)
    return DPOTrainer._prepare_dataset(trainer, dataset, tokenizer, settings, "train")  # type: ignore[arg-type]


# --- TRL / transformers: the DPO trainer's private overrides (checked on TRL 1.16.0, transformers 5.24.0) ---------

_DPO_TRAINER: type | None = None


def dpo_trainer_class() -> type:
    """DPOTrainer whose training order keeps each question's pairs together and whose reference pass goes
    through the on-disk cache (:mod:`aloekit.train.refcache`). Built once, lazily: importing TRL is slow.

    Overrides two private methods: transformers' ``Trainer._get_train_sampler(train_dataset)`` and TRL's
    ``DPOTrainer._precompute_ref_logps(dataset, name, batch_size)``, which ``__init__`` calls for the train and eval
    datasets when ``precompute_ref_log_probs`` is on and whose result carries ``refcache.COLUMNS``."""
    global _DPO_TRAINER
    if _DPO_TRAINER is not None:
        return _DPO_TRAINER
    import torch
    from trl import DPOTrainer

    class AloeDPOTrainer(DPOTrainer):
        def __init__(
            self,
            *args: Any,
            ref_cache: refcache.RefCache,
            ref_exchange_dir: Path,
            groups: list[str] | None = None,
            **kwargs: Any,
        ) -> None:
            # Set before DPOTrainer.__init__, which runs the reference pass (precompute_ref_log_probs).
            self.aloe_ref_cache = ref_cache
            self.aloe_ref_exchange_dir = ref_exchange_dir
            self.aloe_groups = groups
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            # Groups shuffled, each group's pairs consecutive (train/packing.py grouped_order says why).
            dataset: Any = self.train_dataset if train_dataset is None else train_dataset
            if self.aloe_groups is None or dataset is None:
                return super()._get_train_sampler(train_dataset)
            if len(dataset) != len(self.aloe_groups):
                raise RuntimeError(f"DPO dataset has {len(dataset)} rows for {len(self.aloe_groups)} group keys")
            return grouped_order(self.aloe_groups, self.args.data_seed or self.args.seed)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            def compute() -> Any:
                # Whatever the pass draws from the global RNG (DataLoader seeds) is given back, so training
                # sees the same random state whether the values were computed now or read from the cache.
                devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
                with torch.random.fork_rng(devices=devices):
                    return super(AloeDPOTrainer, self)._precompute_ref_logps(
                        shared_cache_path(dataset, self.aloe_ref_exchange_dir, self.accelerator.num_processes),
                        name,
                        batch_size,
                    )

            with score_trained_positions_only():
                return self.aloe_ref_cache.attach(dataset, name, compute)

        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            with score_trained_positions_only():
                return super().compute_loss(*args, **kwargs)

    _DPO_TRAINER = AloeDPOTrainer
    return _DPO_TRAINER


def sft_trainer_class() -> type:
    """TRL's SFTTrainer whose loss projects only the trained positions through the LM head (see
    :func:`score_trained_positions_only`); the loss and gradients are the same."""
    from trl import SFTTrainer

    class AloeSFTTrainer(SFTTrainer):
        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            with score_trained_positions_only():
                return super().compute_loss(*args, **kwargs)

    return AloeSFTTrainer


# --- TRL: a log message's wording (checked on TRL 1.16.0) ---------------------------------------------------------


class _NotBatchOfOneAdvice(logging.Filter):
    ADVICE = "per_device_train_batch_size of 1 with padding-free"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.ADVICE not in record.getMessage()


def silence_batch_of_one_advice() -> None:
    """Drop TRL's warning that padding-free training with one row per micro-batch "annihilates its benefits": our
    rows arrive packed (several conversations each), so the advice does not apply. Matches the message's text on
    logger ``trl.trainer.sft_trainer``; a reworded warning is only shown again, nothing else changes."""
    logging.getLogger("trl.trainer.sft_trainer").addFilter(_NotBatchOfOneAdvice())


# --- transformers: names that changed between releases (checked on transformers 5.24.0) ---------------------------


def checkpointing_arg(config_class: type, enabled: bool) -> dict[str, Any]:
    """transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name warns, and
    TRL's configs still default it to True)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


def attention_implementation(model: Any) -> str:
    """The attention kernel a loaded model runs (``config._attn_implementation``: sdpa, eager, flash...), for
    messages only."""
    return str(getattr(model.config, "_attn_implementation", "?"))
