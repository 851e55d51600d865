"""Supervised fine-tuning (``aloe train sft``): TRL's SFTTrainer with aloekit's defaults and guarantees.

What aloekit adds to a plain ``SFTTrainer``:

* **Loss on the assistant's tokens only**, with masks built from the chat template and checked
  (:mod:`aloekit.train.masks`): works with templates that have no ``{% generation %}`` markers (SmolLM2's), and the
  end-of-turn token is trained so the model learns to stop. TRL receives a pre-tokenized dataset
  (``input_ids`` + ``labels``) and neither re-tokenizes nor rebuilds labels.
* **Padding-free packing without attention across examples**: best-fit-decreasing packing (ours,
  :mod:`aloekit.train.packing`, because it keeps the letter-rotated copies of one question in one row) puts several
  conversations into one row of at most ``max_length`` tokens, and TRL's padding-free collator flattens a batch
  into one sequence whose ``position_ids`` restart at 0 at each conversation. transformers 5 turns restarting
  position ids (with no attention mask) into a block-diagonal causal mask for sdpa and eager attention (and into
  varlen kernels for flash attention), so no token attends to another conversation. That property is checked on
  the actual model before training (a packed forward must equal separate forwards), and proven in the tests.
* **CPU-safe defaults**: fp32 on a CPU (TRL defaults to bf16), gradient checkpointing off (on a CPU and for
  small models it only recomputes the forward pass: more time for memory nobody is short of),
  ``max_length`` (not the removed ``max_seq_length``). Measured on SmolLM2-135M on this project's 2-core CPU,
  these defaults train ~1.5x more tokens per second than a plain SFTTrainer with TRL's defaults.
* **Exact resume**: checkpoints keep optimizer, scheduler, RNG states and the step; ``resume`` continues from the
  last *complete* checkpoint (a checkpoint a kill interrupted is discarded) with the same data order.
* **Records**: ``OUT/config.yaml`` (the config as run), ``OUT/manifest.json`` (versions, seed, dataset
  fingerprint, status, times), ``OUT/metrics.json`` (losses, tokens/s), TensorBoard logs in ``OUT/runs``, and
  ``OUT/model``, a standalone export (LoRA merged) with a model card.

Validation loss is the trainer's: the mean over evaluation batches of each batch's token-averaged loss on
assistant tokens (batches are packed too). ``tokens_per_second`` counts every token of the trained rows (context
included) over the time spent in optimizer steps (evaluation and checkpointing excluded), all processes together.
Under ``accelerate launch`` (recipes/accelerate/*.yaml) every process trains and the first writes the records.

Layout of ``OUT``::

    config.yaml  manifest.json  metrics.json   the run's records
    checkpoints/checkpoint-N/                  the last ``save_total_limit`` checkpoints
    runs/                                      TensorBoard event files
    model/                                     the exported model (``export: true``)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator

from aloekit.config import _Config
from aloekit.errors import MalformedRow, UserError
from aloekit.models import atomic_write_text, file_sha256
from aloekit.train.common import (
    Logging,
    LoraSettings,
    Precision,
    abandoned,
    check_versions,
    device_kind,
    precision_args,
    run_owner,
    score_trained_positions_only,
)
from aloekit.train.masks import MaskedSample, mask_completion, mask_conversation, stop_token_ids

CHECKPOINTS = "checkpoints"
MODEL = "model"


class SFTRunConfig(_Config):
    """Supervised fine-tuning of a chat model on conversations (``aloe train sft CONFIG``)."""

    model: str = Field(description="Model to fine-tune: alias (smollm2-135m-instruct), folder, .gguf file or Hub id.")
    dataset: str = Field(
        description="Conversations in TRL's 'messages' layout: a data-stage folder (train.jsonl, validation.jsonl), "
        "a .jsonl file, or a Hub dataset id (org/name)."
    )
    out: Path = Field(description="Folder for checkpoints, logs, records and the exported model.")
    lora: LoraSettings | None = Field(
        None, description="LoRA adapters (merged into the weights on export); leave unset for full fine-tuning."
    )
    max_length: int = Field(
        1024,
        ge=16,
        description="Most tokens per conversation (longer ones keep their start); with packing, tokens per packed row.",
    )
    packing: bool = Field(
        True,
        description="Pack several conversations per row (best-fit decreasing, the copies of one item in the same "
        "row where they fit, so a step's letter answers balance), padding-free, with position ids "
        "restarting per conversation so none attends to another. False: one padded conversation per row.",
    )
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training set (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to train for; overrides epochs.")
    per_device_batch_size: int = Field(
        4, ge=1, description="Rows per device per micro-batch (with packing, each row holds up to max_length tokens)."
    )
    gradient_accumulation: int = Field(4, ge=1, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = no clipping).")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass to save memory, at ~30% more compute. Off by "
        "default: on a CPU and for small models memory is not the limit, so it only costs time; turn it on for "
        "large models on a GPU.",
    )
    eval_steps: int = Field(
        50, ge=1, description="Compute the validation loss every N optimizer steps (and at the end)."
    )
    eval_at_start: bool = Field(True, description="Also compute the validation loss before training (a baseline).")
    save_steps: int = Field(100, ge=1, description="Save a checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (the most recent ones).")
    validation_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="For a single file or a Hub dataset without a validation split: share held out for validation.",
    )
    logging: Logging = Field(default_factory=Logging, description="Where training curves go.")  # type: ignore[arg-type]
    seed: int = Field(42, description="Seed for adapter initialisation, data order and dropout.")
    precision: Precision = Field(
        "auto",
        description="auto: bf16 on a GPU that supports it, fp32 otherwise. fast: bf16 also on a CPU with "
        "AVX512-BF16/AMX (autocast, ~2x fp32 there), fp32 elsewhere. bf16 on a CPU without them is refused.",
    )
    allow_pickle: bool = Field(False, description="Allow pickle weights (.bin/.pt), which can run code on load.")
    trust_remote_code: bool = Field(False, description="Run the model's own Python code (config auto_map).")
    export: bool = Field(
        True, description="Write OUT/model: a standalone model folder (LoRA merged) with a model card."
    )

    @field_validator("lora")
    @classmethod
    def _qlora_needs_cuda(cls, lora: LoraSettings | None) -> LoraSettings | None:
        if lora is not None and lora.qlora and device_kind() != "cuda":
            raise ValueError("qlora needs a CUDA GPU and bitsandbytes: set qlora: false on this machine")
        return lora


# --- data ------------------------------------------------------------------------------------------------------


@dataclass
class ChatData:
    """Training and validation conversations, with where they came from."""

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    reference: str
    fingerprint: dict[str, str]
    """sha256 of the train (and validation) file, or of the records for a Hub dataset."""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from aloekit.data.dataset import read_records

    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise UserError(f"{path}: a .json dataset must be a list of records with 'messages'")
        return data
    records = read_records(path)
    for number, record in enumerate(records, start=1):
        record.setdefault("_where", f"{path}:{number}")
    return records


def _holdout(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if fraction <= 0 or len(records) < 2:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(fraction * len(records)))
    held = set(order[:n_val])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def load_chat_data(reference: str, *, validation_fraction: float = 0.05, seed: int = 42) -> ChatData:
    """Conversations from a data-stage folder, a .jsonl/.json file or a Hub dataset id."""
    path = Path(reference).expanduser()
    if path.is_dir():
        train_file = path / "train.jsonl"
        if not train_file.is_file():
            raise UserError(f"dataset folder {path} has no train.jsonl: build one with `aloe data build`")
        validation_file = path / "validation.jsonl"
        fingerprint = {"train_sha256": file_sha256(train_file)}
        validation: list[dict[str, Any]] = []
        if validation_file.is_file():
            validation = _read_jsonl(validation_file)
            fingerprint["validation_sha256"] = file_sha256(validation_file)
        return ChatData(_read_jsonl(train_file), validation, str(path), fingerprint)
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise UserError(f"dataset {path} is not a .jsonl or .json file of conversations ('messages')")
        train, validation = _holdout(_read_jsonl(path), validation_fraction, seed)
        return ChatData(train, validation, str(path), {"train_sha256": file_sha256(path)})
    if "/" in reference and not reference.startswith((".", "/", "~")):
        return _load_hub(reference, validation_fraction, seed)
    raise UserError(
        f"dataset '{reference}' not found: pass a data-stage folder, a .jsonl file or a Hub dataset id (org/name)"
    )


def _load_hub(reference: str, validation_fraction: float, seed: int) -> ChatData:
    import datasets

    try:
        loaded = datasets.load_dataset(reference)
    except Exception as e:  # datasets raises many kinds: not found, offline, bad config...
        raise UserError(f"cannot load Hub dataset '{reference}': {e}") from e
    if "train" not in loaded:
        raise UserError(f"Hub dataset '{reference}' has no train split (splits: {', '.join(loaded)})")
    train = [dict(r) for r in loaded["train"]]
    if "validation" in loaded:
        validation = [dict(r) for r in loaded["validation"]]
    else:
        train, validation = _holdout(train, validation_fraction, seed)
    digest = hashlib.sha256(json.dumps([r.get("messages") for r in train], sort_keys=True).encode()).hexdigest()
    return ChatData(train, validation, reference, {"train_sha256": digest})


def _messages(record: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    from aloekit.data.schema import check_messages

    messages = record.get("messages")
    if not isinstance(messages, list):
        keys = ", ".join(sorted(k for k in record if not k.startswith("_"))) or "none"
        raise UserError(f"{where}: no 'messages' list (fields: {keys}); SFT reads conversations in TRL's layout")
    try:
        check_messages(messages, where)
    except MalformedRow as e:
        raise UserError(e.message) from e
    return [{"role": m["role"], "content": m["content"]} for m in messages]


@dataclass
class TokenizedSplit:
    """A split as token ids and labels (-100 where not trained), ready for TRL, with counts for the records."""

    samples: list[MaskedSample]
    ids: list[str]
    conversations: int = 0
    truncated: int = 0
    dropped_no_trained_token: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    def columns(self) -> dict[str, list[list[int]]]:
        return {"input_ids": [s.input_ids for s in self.samples], "labels": [s.labels for s in self.samples]}

    def packed_columns(self, max_length: int) -> dict[str, list[list[int]]]:
        """Rows of at most ``max_length`` tokens, the copies of one item (``<item>:rot<k>``) in one row where they
        fit (train/packing.py says why), with ``seq_lengths`` so that TRL's padding-free collator restarts the
        position ids per sample and no sample attends to another."""
        from aloekit.data.mixture import item_key
        from aloekit.train.packing import pack_groups

        bins = pack_groups([len(s.input_ids) for s in self.samples], [item_key(i) for i in self.ids], max_length)
        rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "seq_lengths": []}
        for members in bins:
            rows["input_ids"].append([t for i in members for t in self.samples[i].input_ids])
            rows["labels"].append([t for i in members for t in self.samples[i].labels])
            rows["seq_lengths"].append([len(self.samples[i].input_ids) for i in members])
        return rows

    def dataset_columns(self, config: SFTRunConfig) -> dict[str, list[list[int]]]:
        return self.packed_columns(config.max_length) if config.packing else self.columns()

    def stats(self) -> dict[str, int]:
        return {
            "conversations": self.conversations,
            "kept": len(self.samples),
            "truncated": self.truncated,
            "dropped_no_trained_token_after_truncation": self.dropped_no_trained_token,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
        }


def tokenize_split(
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    max_length: int,
    stop_ids: frozenset[int] | None = None,
    name: str = "train",
    limit: int | None = None,
) -> TokenizedSplit:
    """Mask every conversation (checked), truncate to ``max_length`` keeping the start, and drop conversations
    whose trained tokens all fall past ``max_length`` (counted in the stats)."""
    stops = stop_token_ids(tokenizer) if stop_ids is None else stop_ids
    out = TokenizedSplit([], [])
    for n, record in enumerate(records[:limit] if limit else records, start=1):
        where = str(record.get("_where") or f"{name} record {n}" + (f" (id {record['id']})" if "id" in record else ""))
        messages = _messages(record, where)
        out.conversations += 1
        if record.get("plain"):
            # A plain prompt/completion (lm-eval layout): trained on the completion, prompt cut from the left.
            if [m["role"] for m in messages] != ["user", "assistant"]:
                raise UserError(f"{where}: a plain sample has one user turn (the prompt) and one assistant turn")
            prompt, completion = messages[0]["content"], messages[1]["content"]
            sample = mask_completion(tokenizer, prompt, completion, max_length=max_length, where=where)
            out.truncated += sample.spans[0][0] < len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        else:
            sample = mask_conversation(tokenizer, messages, stop_ids=stops, where=where)
        if len(sample.input_ids) > max_length:
            out.truncated += 1
            sample = sample.truncated(max_length)
            if sample.n_trained == 0:
                out.dropped_no_trained_token += 1
                continue
        out.samples.append(sample)
        out.ids.append(str(record.get("id") or where))
        out.tokens += len(sample.input_ids)
        out.trained_tokens += sample.n_trained
    return out


# --- packing check ---------------------------------------------------------------------------------------------


def packed_forward_matches(
    model: Any, lengths: Sequence[int] = (9, 14, 6), vocab: int | None = None
) -> dict[str, float]:
    """Run a padding-free packed batch (TRL's collator) and each example separately through ``model``.

    Returns the largest logit difference between the two (``separate``) and, for scale, between the packed run
    and a plain causal run over the concatenation (``contaminated``: what attention across examples gives).
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    generator = torch.Generator().manual_seed(0)
    high = min(vocab or model.config.get_text_config().vocab_size, 2000)
    seqs = [torch.randint(10, high, (n,), generator=generator).tolist() for n in lengths]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s, "labels": s} for s in seqs]
    )
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(**inputs, use_cache=False).logits[0].float()
            separate = torch.cat(
                [model(input_ids=torch.tensor([s], device=device), use_cache=False).logits[0].float() for s in seqs]
            )
            plain = model(
                input_ids=inputs["input_ids"],
                position_ids=inputs["position_ids"],
                attention_mask=torch.ones_like(inputs["input_ids"]),
                use_cache=False,
            ).logits[0]
    finally:
        model.train(was_training)
    return {
        "separate": float((packed - separate).abs().max()),
        "contaminated": float((plain.float() - separate).abs().max()),
    }


def check_packed_attention(model: Any) -> dict[str, float]:
    """Refuse to pack for a model whose attention lets packed examples see each other."""
    diffs = packed_forward_matches(model)
    exact = diffs["separate"] <= 1e-3
    clearly_isolated = diffs["separate"] * 10 < diffs["contaminated"]
    if not (exact or clearly_isolated):
        impl = getattr(model.config, "_attn_implementation", "?")
        raise UserError(
            f"packing is unsafe for this model: with attention '{impl}', packed examples attend to each other "
            f"(logits differ by {diffs['separate']:.3g} from separate runs); set packing: false in the SFT config"
        )
    return diffs


# --- checkpoints -----------------------------------------------------------------------------------------------


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders whose trainer_state.json (written last) is present and valid, oldest first."""
    found: list[tuple[int, Path]] = []
    if not folder.is_dir():
        return []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if not (path.is_dir() and suffix.isdigit()):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def discard_incomplete_checkpoints(folder: Path) -> list[str]:
    """Delete checkpoint folders a kill left half-written, so neither resume nor rotation picks them."""
    complete = set(complete_checkpoints(folder))
    removed = []
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        if path.is_dir() and path not in complete:
            shutil.rmtree(path)
            removed.append(path.name)
    return removed


# --- the run ---------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """A run record, written atomically with the user's umask (readable by others under the usual 022)."""
    atomic_write_text(path, text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _config_record(config: SFTRunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def _prepare_out(config: SFTRunConfig, resume: bool) -> tuple[bool, str | None]:
    """Check that OUT can take this run; return (resume, message).

    A run that failed, or whose process is gone, before its first complete checkpoint has nothing worth keeping:
    it is taken over (started afresh, with a message) instead of blocking the corrected rerun until the user
    deletes the folder. A run with checkpoints is resumed with --resume, as before.
    """
    out = config.out
    if out.exists() and not out.is_dir():
        raise UserError(f"out {out} is a file: name a folder")
    held = out.is_dir() and any(out.iterdir())
    if held:
        previous = _read_json(out / "manifest.json")
        why = abandoned(previous)
        if why is not None and not complete_checkpoints(out / CHECKPOINTS):
            (out / "metrics.json").unlink(missing_ok=True)  # the stale run's, never this one's
            return False, f"taking over {out}: its earlier run stopped before its first checkpoint ({why})"
        if previous.get("status") == "running" and why is None and previous.get("host") == socket.gethostname():
            pid = previous.get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                raise UserError(
                    f"out {out} is in use by a running training (pid {pid}): wait for it to finish, or choose "
                    "another folder"
                )
    if held and not resume:
        raise UserError(
            f"out {out} already holds a run: pass --resume to continue it, or choose a new folder (or delete it)"
        )
    if resume and held:
        recorded = out / "config.yaml"
        if recorded.is_file():
            before = yaml.safe_load(recorded.read_text(encoding="utf-8")) or {}
            now = _config_record(config)
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            if changed:
                raise UserError(
                    f"--resume with a config that differs from the run in {out} ({', '.join(changed)}): "
                    "resume with the same config, or start a new run in a new folder"
                )
    return resume, None


class _Timer:
    """Trainer callback timing optimizer steps only (not evaluation, saving or logging)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                timer.mark = time.perf_counter()

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                # Here, not at train begin: a resumed run loads its state (tokens seen so far) after that.
                if timer.tokens_at_start is None:
                    timer.tokens_at_start = state.num_input_tokens_seen

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                now = time.perf_counter()
                timer.train_seconds += now - timer.mark
                timer.mark = now

            def _reset(self, *a: Any, **kw: Any) -> None:
                timer.mark = time.perf_counter()

            on_evaluate = on_save = on_log = _reset

        self.callback = Callback()
        self.mark = time.perf_counter()
        self.train_seconds = 0.0
        self.tokens_at_start: int | None = None


def _load_model(config: SFTRunConfig, path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    precision = precision_args(config.precision)
    if config.lora is not None and config.lora.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise UserError("lora.qlora needs bitsandbytes: pip install bitsandbytes") from e
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        options["dtype"] = torch.bfloat16
    elif config.lora is not None and (precision["bf16"] or precision["fp16"]):
        # Frozen base weights in half precision save memory; the adapters stay fp32 (peft's default).
        options["dtype"] = torch.bfloat16 if precision["bf16"] else torch.float16
    else:
        options["dtype"] = torch.float32  # full fine-tuning keeps fp32 master weights (autocast does the rest)
    try:
        return AutoModelForCausalLM.from_pretrained(path, **options)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model {config.model} for training: {e}") from e


def _sft_args(config: SFTRunConfig, *, has_eval: bool, progress: bool) -> Any:
    from trl import SFTConfig

    report_to = [r for r in config.logging.report_to() if r != "tensorboard"]  # TensorBoard: our own callback
    return SFTConfig(
        output_dir=str(config.out / CHECKPOINTS),
        # Conversations arrive tokenized, truncated and (with packing) already packed by TokenizedSplit
        # .packed_columns, which keeps an item's copies in one row; TRL's collator reads their seq_lengths.
        max_length=None,
        packing=False,
        padding_free=config.packing,
        eval_packing=False,
        shuffle_dataset=False,  # the sampler shuffles (seeded), which resume replays exactly
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps in transformers 5
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        # transformers 5 renamed gradient_checkpointing (TRL still defaults the old name to True).
        activation_checkpointing=config.gradient_checkpointing,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging.steps,
        report_to=report_to or "none",
        seed=config.seed,
        data_seed=config.seed,
        # Padding-free rows hold no padding, and the pad token (often the end-of-turn token) occurs in the data,
        # so count every token there; padded rows count their attention mask.
        include_num_input_tokens_seen="all" if config.packing else "non_padding",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **precision_args(config.precision),
    )


def debug_token_rows(config: SFTRunConfig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` training conversations as ``[(token text, trained), ...]`` (no model is loaded)."""
    from transformers import AutoTokenizer

    from aloekit import models

    resolved = models.resolve(
        config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=config.trust_remote_code)
    data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    split = tokenize_split(tokenizer, data.train, max_length=config.max_length, limit=n)
    rows = []
    for sample_id, sample in zip(split.ids, split.samples, strict=True):
        tokens = [
            (tokenizer.decode([t], skip_special_tokens=False), keep)
            for t, keep in zip(sample.input_ids, sample.trained, strict=True)
        ]
        rows.append({"id": sample_id, "tokens": tokens, "trained": sample.n_trained, "length": len(tokens)})
    return rows


def _source_datasets(records: Sequence[Mapping[str, Any]], reference: str) -> list[str]:
    """Hub ids of the datasets the records came from, for the model card's metadata."""
    if not Path(reference).exists() and "/" in reference:
        return [reference]
    try:
        from aloekit.data.sources import SOURCES
    except ImportError:  # pragma: no cover
        return []
    names = sorted({str(r.get("source")) for r in records if r.get("source")})
    ids = []
    for name in names:
        spec = SOURCES.get(name)
        if spec is not None and spec.hub is not None and spec.hub.path not in ids:
            ids.append(spec.hub.path)
    return ids


def sharded_training() -> bool:
    """True under ``accelerate launch`` with DeepSpeed or FSDP, where each process holds a shard of the weights."""
    return any(os.environ.get(f"ACCELERATE_USE_{k}", "").lower() in ("1", "true") for k in ("DEEPSPEED", "FSDP"))


@dataclass
class BuiltTrainer:
    """An SFTTrainer ready to train, with the tokenized splits it was given."""

    trainer: Any
    train: TokenizedSplit
    validation: TokenizedSplit
    timer: _Timer
    base_dtype: Any
    packing_check: dict[str, float] | None


def build_trainer(
    config: SFTRunConfig,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    resolved_path: Path | None = None,
    data: ChatData | None = None,
) -> BuiltTrainer:
    """Tokenize and mask the data, load the model, check packed attention and build TRL's SFTTrainer.

    Creates only the (empty) checkpoints folder in ``config.out``: the trainer fills it once it trains.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from transformers.integrations import TensorBoardCallback
    from trl import SFTTrainer

    say = log or (lambda message: None)
    if resolved_path is None:
        from aloekit.train.common import resolve_model

        resolved_path = resolve_model(
            config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
        )
    if data is None:
        data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolved_path, trust_remote_code=config.trust_remote_code)
    say(f"tokenizing {len(data.train)} training and {len(data.validation)} validation conversations")
    train = tokenize_split(tokenizer, data.train, max_length=config.max_length, name="train")
    validation = tokenize_split(tokenizer, data.validation, max_length=config.max_length, name="validation")
    if not train.samples:
        raise UserError(f"no training conversation has a trained token within max_length {config.max_length}")

    has_eval = bool(validation.samples)
    # The training arguments come before the model: under DeepSpeed ZeRO-3 they make from_pretrained shard it.
    args = _sft_args(config, has_eval=has_eval, progress=progress)
    model = _load_model(config, resolved_path)
    base_dtype = model.dtype
    packing_check = None
    if config.packing and not sharded_training():
        # Sharded weights (ZeRO-3, FSDP) only come together inside the trainer: the check runs unsharded only.
        packing_check = check_packed_attention(model)

    timer = _Timer()
    callbacks: list[Any] = [timer.callback]
    if config.logging.tensorboard:
        tensorboard = TensorBoardCallback()
        # Its writer is (re)created lazily, also for the evaluation after training: always in OUT/runs.
        tensorboard.logging_dir = str(config.out / "runs")
        callbacks.append(tensorboard)
    # Rows arrive packed (TokenizedSplit.packed_columns), so TRL's advice against one row per micro-batch
    # ("padding-free with batch size 1 annihilates its benefits") does not apply: silence that one warning.
    logging.getLogger("trl.trainer.sft_trainer").addFilter(_NotBatchOfOneAdvice())
    trainer = _trainer_class(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(train.dataset_columns(config)),
        eval_dataset=Dataset.from_dict(validation.dataset_columns(config)) if has_eval else None,
        processing_class=tokenizer,
        peft_config=config.lora.peft_config() if config.lora is not None else None,
        callbacks=callbacks,
    )
    if not progress:  # without a progress bar the trainer prints every log line: keep library calls quiet
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return BuiltTrainer(trainer, train, validation, timer, base_dtype, packing_check)


class _NotBatchOfOneAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "per_device_train_batch_size of 1 with padding-free" not in record.getMessage()


def _trainer_class(base: type) -> type:
    """TRL's SFTTrainer whose loss projects only the trained positions through the LM head (see
    :func:`~aloekit.train.common.score_trained_positions_only`); the loss and gradients are the same."""

    class AloeSFTTrainer(base):  # type: ignore[misc, valid-type]
        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            with score_trained_positions_only():
                return super().compute_loss(*args, **kwargs)

    return AloeSFTTrainer


def train_sft(
    config: SFTRunConfig,
    *,
    resume: bool = False,
    debug_tokens: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run SFT as ``config`` says; return the run's metrics (``status`` 'finished').

    ``resume`` continues the run in ``config.out`` from its last complete checkpoint (optimizer, scheduler, RNG
    and data order included): the final weights equal those of an uninterrupted run. ``debug_tokens`` returns
    the first N conversations' tokens with their trained flags (``status`` 'debug') and trains nothing.
    """
    versions = check_versions()
    with _progress_bars(progress):
        if debug_tokens is not None:
            return {"status": "debug", "samples": debug_token_rows(config, debug_tokens)}
        try:
            return _train(
                config, resume=resume, progress=progress, say=log or (lambda message: None), versions=versions
            )
        except Exception as e:
            if int(os.environ.get("RANK", "0")) == 0:
                _mark_failed(config.out / "manifest.json", e)
            raise


def _mark_failed(path: Path, error: BaseException) -> None:
    """Record in this process's "running" manifest that the run failed (and why), so the next run in the folder
    takes it over instead of taking it for a run still in progress."""
    manifest = _read_json(path)
    if manifest.get("status") != "running" or manifest.get("pid") != os.getpid():
        return
    reason = " ".join(str(error).split())[:300] or type(error).__name__
    manifest.update({"status": "failed", "failed": _now(), "error": reason})
    with contextlib.suppress(OSError):
        _write(path, json.dumps(manifest, indent=2))


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Library calls stay quiet unless asked: transformers' and datasets' bars off for the call, then restored."""
    import datasets
    from transformers.utils import logging as hf_logging

    were = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were[0]:
            hf_logging.enable_progress_bar()
        if were[1]:
            datasets.enable_progress_bars()


def _train(
    config: SFTRunConfig, *, resume: bool, progress: bool, say: Callable[[str], None], versions: dict[str, str]
) -> dict[str, Any]:
    from aloekit import models
    from aloekit.provenance import package_versions

    # Under `accelerate launch` every process runs this; only the first checks and writes the records.
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        resume, took_over = _prepare_out(config, resume)
        if took_over:
            say(took_over)
    out = config.out
    checkpoints = out / CHECKPOINTS
    removed = discard_incomplete_checkpoints(checkpoints) if main else []
    if removed:
        say(f"discarded incomplete checkpoint(s) left by an interrupted run: {', '.join(removed)}")
    complete = complete_checkpoints(checkpoints)
    resume_from = str(complete[-1]) if resume and complete else None
    if resume and resume_from is None:
        say(f"no complete checkpoint in {checkpoints}: starting from step 0")

    resolved = models.resolve(
        config.model, allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code
    )
    data = load_chat_data(config.dataset, validation_fraction=config.validation_fraction, seed=config.seed)
    if not data.train:
        raise UserError(f"dataset {config.dataset} has no training conversations")

    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] = {}
    if resume and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    manifest.update(
        {
            "stage": "sft",
            "status": "running",
            **run_owner(),
            "started": manifest.get("started") or _now(),
            "versions": package_versions("torch", "transformers", "trl", "peft", "accelerate", "datasets"),
            "trainer_versions": versions,
            "device": device_kind(),
            "seed": config.seed,
            "model": {"reference": config.model, "path": str(resolved.path), "source": resolved.source},
            "dataset": {"reference": data.reference, **data.fingerprint},
        }
    )
    if resume_from:
        manifest.setdefault("resumed", []).append({"from": Path(resume_from).name, "at": _now()})
    # Created only now: a model or dataset that fails to load leaves no empty folder behind.
    out.mkdir(parents=True, exist_ok=True)
    if main:
        _write(out / "config.yaml", yaml.safe_dump(_config_record(config), sort_keys=False))
        _write(manifest_path, json.dumps(manifest, indent=2))

    import torch

    built = build_trainer(config, progress=progress, log=say, resolved_path=resolved.path, data=data)
    trainer, train, validation = built.trainer, built.train, built.validation
    has_eval = bool(validation.samples)
    timer = built.timer

    eval_before = None
    if has_eval and config.eval_at_start and resume_from is None:
        eval_before = trainer.evaluate()["eval_loss"]
        say(f"validation loss before training: {eval_before:.4f}")
        # Recorded now, so a run killed and resumed still reports its baseline.
        if main:
            _write(out / "metrics.json", json.dumps({"status": "running", "eval_loss_before": eval_before}))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h]
    eval_final = None
    if has_eval:  # the validation loss at the last step: already computed if eval_steps divides it
        done = evals and evals[-1]["step"] == trainer.state.global_step
        eval_final = evals[-1]["eval_loss"] if done else trainer.evaluate()["eval_loss"]
    if eval_before is None:  # a resumed run: the baseline was logged by the first session
        recorded = _read_json(out / "metrics.json").get("eval_loss_before")
        eval_before = recorded if isinstance(recorded, float) else None
    tokens = int(trainer.state.num_input_tokens_seen - (timer.tokens_at_start or 0))
    metrics: dict[str, Any] = {
        "status": "finished",
        "out": str(out),
        "steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "train_loss": float(result.training_loss),
        "eval_loss_before": eval_before,
        "eval_loss": eval_final,
        "eval_losses": [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "train_losses": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "tokens_this_session": tokens,  # all processes together
        "train_seconds": round(timer.train_seconds, 2),
        "tokens_per_second": round(tokens / timer.train_seconds, 2) if timer.train_seconds else None,
        "wall_seconds": round(wall, 2),
        "resumed_from": Path(resume_from).name if resume_from else None,
        "processes": trainer.args.world_size,
        "packing_check": built.packing_check,
        "data": {"train": train.stats(), "validation": validation.stats()},
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    gathered = None
    if config.export and (sharded_training() or (config.lora is not None and config.lora.qlora)):
        # Every process takes part in gathering the shards; the first then exports from the saved folder. QLoRA
        # adapters go the same way: merged into an unquantized copy of the base, not into 4-bit weights.
        gathered = out / CHECKPOINTS / "final"
        trainer.save_model(str(gathered))
    if not trainer.is_world_process_zero():
        return metrics
    if config.export:
        from aloekit.train.export import base_model_id, export_model, model_card

        results = {
            k: metrics[k] for k in ("eval_loss_before", "eval_loss", "train_loss", "steps") if metrics[k] is not None
        }
        card = model_card(
            title=f"{out.resolve().name} (aloekit SFT)",
            base_model=base_model_id(config.model),
            datasets=_source_datasets(data.train, data.reference),
            config=_config_record(config),
            results=results,
            lora=config.lora is not None,
            description=f"Supervised fine-tuning on {len(train.samples)} conversations from `{data.reference}` "
            f"(train sha256 {data.fingerprint['train_sha256'][:16]}).",
        )
        dtype = built.base_dtype if config.lora is not None else _declared_dtype(resolved.path) or torch.float32
        trained = trainer.model if gathered is None else _reload(gathered, resolved.path, config)
        export_model(trained, trainer.processing_class, out / MODEL, base_path=resolved.path, card=card, dtype=dtype)
        metrics["model"] = str(out / MODEL)
    _write(out / "metrics.json", json.dumps(metrics, indent=2))
    manifest.update({"status": "finished", "finished": _now()})
    _write(manifest_path, json.dumps(manifest, indent=2))
    return metrics


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _declared_dtype(folder: Path) -> Any:
    """The dtype a model folder's config declares (bf16 base -> bf16 export), or None."""
    import torch

    config = _read_json(folder / "config.json")
    name = config.get("dtype") or config.get("torch_dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else None


def _reload(saved: Path, base: Path, config: SFTRunConfig) -> Any:
    """The model ``trainer.save_model`` gathered from shards: full weights, or the base plus saved adapters."""
    import torch
    from transformers import AutoModelForCausalLM

    if config.lora is None:
        return AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=config.trust_remote_code)
    return PeftModel.from_pretrained(model, saved)
