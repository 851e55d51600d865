"""SFT's data: conversations from a data-stage folder, a JSONL/JSON file or a Hub dataset, masked for loss on
the assistant's tokens only (:mod:`aloekit.train.masks`), truncated, and laid out for TRL (one conversation per
row, or packed rows with ``seq_lengths``)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit.data.dataset import read_records
from aloekit.data.schema import check_messages
from aloekit.errors import MalformedRow, UserError
from aloekit.models import file_sha256
from aloekit.train.masks import MaskedSample, mask_completion, mask_conversation, stop_token_ids
from aloekit.train.packing import pack_groups


@dataclass
class ChatData:
    """Training and validation conversations, with where they came from."""

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    reference: str
    fingerprint: dict[str, str]
    """sha256 of the train (and validation) file, or of the records for a Hub dataset."""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
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
        # Deferred: data.mixture pulls in the whole data layer (sources, templates, safety styles).
        from aloekit.data.mixture import item_key

        bins = pack_groups([len(s.input_ids) for s in self.samples], [item_key(i) for i in self.ids], max_length)
        rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "seq_lengths": []}
        for members in bins:
            rows["input_ids"].append([t for i in members for t in self.samples[i].input_ids])
            rows["labels"].append([t for i in members for t in self.samples[i].labels])
            rows["seq_lengths"].append([len(self.samples[i].input_ids) for i in members])
        return rows

    def dataset_columns(self, max_length: int, packing: bool) -> dict[str, list[list[int]]]:
        return self.packed_columns(max_length) if packing else self.columns()

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


def source_datasets(records: Sequence[Mapping[str, Any]], reference: str) -> list[str]:
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
