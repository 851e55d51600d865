"""Reference log-probabilities for DPO, computed once and kept on disk.

DPO compares the policy's log-probability of each chosen and rejected reply with the reference model's. The
reference never changes during a stage, so its log-probabilities are a pure function of three things:

* the pairs (the sha256 of the pairs file and the split);
* how they are tokenized (tokenizer files and chat template, ``max_length``, truncation, TRL's version);
* the reference weights (:func:`aloekit.models.fingerprint` of the folder the stage starts from) and the precision
  they run in.

:func:`cache_key` hashes exactly these; a cache file ``<key>.safetensors`` holds one ``chosen`` and one
``rejected`` float32 value per tokenized row, plus a checksum of each row's token ids (``checksums``), so a file
is only reused for the very token sequences it was computed on.

How it plugs into TRL 1.16: with ``precompute_ref_log_probs=True`` DPOTrainer calls ``_precompute_ref_logps``
for its train and eval datasets at construction; that pass runs the reference (the policy before training, or
with LoRA the base with adapters disabled) over the tokenized pairs and returns them with two extra columns,
``ref_chosen_logps`` and ``ref_rejected_logps``, which the collator batches and ``_compute_loss`` reads instead of
running a reference forward. :meth:`RefCache.attach` wraps that method: on a miss it lets TRL's own code compute
the columns (so they are bit-for-bit what TRL would use) and stores them; on a hit it appends the stored columns
the same way TRL does and TRL's reference pass never runs. Training then needs no reference model at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.io import atomic_path

CACHE_VERSION = 1
"""Bump when what a cache file holds or how its values are computed changes, so old files are not reused."""

COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""The dataset columns TRL's DPOTrainer reads precomputed reference log-probabilities from."""


def tokenizer_hash(tokenizer: Any) -> str:
    """A content hash of everything that decides how a pair is tokenized: the vocabulary and merges (the fast
    tokenizer's serialised form, else the vocabulary), the chat template and the special tokens."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    template = (
        tokenizer.chat_template
        if isinstance(tokenizer.chat_template, str)
        else json.dumps(tokenizer.chat_template, sort_keys=True)
    )
    digest.update(b"\0template\0" + template.encode())
    specials = {name: getattr(tokenizer, name, None) for name in ("bos_token", "eos_token", "pad_token")}
    digest.update(b"\0specials\0" + json.dumps(specials, sort_keys=True).encode())
    return digest.hexdigest()


def cache_key(
    *,
    dataset_sha256: str,
    split: str,
    reference_fingerprint: str,
    tokenization: Mapping[str, Any],
) -> str:
    """The cache key of one split's reference log-probabilities.

    ``tokenization`` holds every setting that changes the token ids or the values computed on them (tokenizer
    hash, max_length, truncation mode, precision, TRL version...); it must be JSON-serialisable.
    """
    payload = json.dumps(
        {
            "version": CACHE_VERSION,
            "dataset": dataset_sha256,
            "split": split,
            "reference": reference_fingerprint,
            "tokenization": dict(tokenization),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


def row_checksums(dataset: Any) -> np.ndarray:
    """One 64-bit checksum per tokenized row (prompt, chosen and rejected token ids), in row order."""
    sums = np.empty(len(dataset), dtype=np.int64)
    columns = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    for i, row in enumerate(columns):
        digest = hashlib.blake2b(digest_size=8)
        for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
            digest.update(np.asarray(row[name], dtype=np.int64).tobytes() + b"|")
        sums[i] = np.frombuffer(digest.digest(), dtype=np.int64)[0]
    return sums


@dataclass(frozen=True)
class RefLogps:
    """Reference log-probabilities of one split: row i of the tokenized dataset -> chosen[i], rejected[i]."""

    chosen: np.ndarray
    rejected: np.ndarray
    checksums: np.ndarray


def save(path: Path, logps: RefLogps, metadata: Mapping[str, str]) -> None:
    """Write a cache file atomically (temporary sibling, then rename): readers see a whole file or none."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file(
            {
                "chosen": np.ascontiguousarray(logps.chosen, dtype=np.float32),
                "rejected": np.ascontiguousarray(logps.rejected, dtype=np.float32),
                "checksums": np.ascontiguousarray(logps.checksums, dtype=np.int64),
            },
            str(tmp),
            metadata={str(k): str(v) for k, v in metadata.items()},
        )


def load(path: Path) -> RefLogps | None:
    """The cache file at ``path``, or None when it is missing or unreadable (then the values are recomputed)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
        found = RefLogps(tensors["chosen"], tensors["rejected"], tensors["checksums"])
    except (OSError, KeyError, ValueError, SafetensorError):
        return None
    if not len(found.chosen) == len(found.rejected) == len(found.checksums):
        return None
    return found


@dataclass
class RefCache:
    """The reference log-probabilities of one DPO stage: one cache key per split (``train``, ``eval``)."""

    folder: Path
    keys: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)
    outcome: dict[str, str] = field(default_factory=dict)
    """split -> 'hit' (read from disk, no reference forward) or 'computed'; filled by :meth:`attach`."""

    def path(self, split: str) -> Path:
        return self.folder / f"{self.keys[split]}.safetensors"

    def complete(self) -> bool:
        """Whether every split already has a cache file (then the reference model is never needed)."""
        return all(self.path(split).is_file() for split in self.keys)

    def attach(self, dataset: Any, split: str, compute: Callable[[], Any]) -> Any:
        """``dataset`` (tokenized by TRL) with the two reference columns appended.

        On a hit the columns come from the cache file; otherwise ``compute()`` (TRL's own precompute pass) returns
        the dataset with the columns, which are stored for next time. A file whose row checksums differ from
        ``dataset``'s token ids is treated as a miss and overwritten.
        """
        from datasets import Dataset, Features, Value, concatenate_datasets

        checksums = row_checksums(dataset)
        cached = load(self.path(split)) if split in self.keys else None
        if cached is not None and np.array_equal(cached.checksums, checksums):
            self.outcome[split] = "hit"
            features = Features({name: Value("float32") for name in COLUMNS})
            columns = Dataset.from_dict(
                {COLUMNS[0]: cached.chosen.tolist(), COLUMNS[1]: cached.rejected.tolist()}, features=features
            )
            return concatenate_datasets([dataset, columns], axis=1)
        result = compute()
        if split in self.keys:
            values = result.select_columns(list(COLUMNS)).with_format("numpy")
            logps = RefLogps(
                np.asarray(values[COLUMNS[0]], dtype=np.float32),
                np.asarray(values[COLUMNS[1]], dtype=np.float32),
                checksums,
            )
            save(self.path(split), logps, {**self.metadata, "split": split, "rows": str(len(checksums))})
        self.outcome[split] = "computed"
        return result
