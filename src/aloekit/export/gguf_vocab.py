"""A model folder's tokenizer as GGUF metadata, following the conventions of llama.cpp's converter.

Two vocabulary kinds cover the architectures we export:

* byte-level BPE (``tokenizer.json`` with a ByteLevel pre-tokenizer: SmolLM2, Llama 3, Qwen): tokens in their
  byte-level spelling (``Ġthe``), the merges, and a pre-tokenizer name that tells llama.cpp how to split text
  before merging. llama.cpp knows a fixed list of names; a split we cannot name would make llama.cpp tokenize
  differently from transformers, so it is refused rather than guessed.
* SentencePiece (``tokenizer.model``: Gemma 3): pieces with their scores and types, read with the
  ``sentencepiece`` package through ``gguf.vocab.SentencePieceVocab``.

Special token ids and the chat template come from ``gguf.SpecialVocab`` (the logic llama.cpp itself uses);
whether BOS/EOS are added is measured on the transformers tokenizer, so llama.cpp adds exactly what it adds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from aloekit.errors import UserError
from aloekit.io import read_json_object

# tokenizer.json pre-tokenizers llama.cpp implements, as (structure -> llama.cpp's name). The structure is the
# JSON with the fields that do not change splitting removed (see _split_signature).
_GPT2_BYTE_LEVEL = {"type": "ByteLevel", "use_regex": True}
_PRE_TOKENIZERS: list[tuple[object, str]] = [
    # GPT-2's regex alone (also what transformers rebuilds from a GGUF it cannot name, e.g. the embedded SmolLM2).
    (_GPT2_BYTE_LEVEL, "gpt-2"),
    # Every digit on its own, then GPT-2's regex: SmolLM / SmolLM2 as released on the Hub.
    (
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _GPT2_BYTE_LEVEL]},
        "smollm",
    ),
]
# The split regexes of Llama 3 and Qwen2 as their tokenizer.json files spell them (a Split before ByteLevel).
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_REGEX_NAMES = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}


@dataclass
class _Tokens:
    """A tokenizer's token list as llama.cpp spells it."""

    model: str
    pre: str | None
    tokens: list[str]
    types: list[int]
    scores: list[float] | None


@dataclass
class Vocabulary:
    """What a GGUF file needs to rebuild the tokenizer."""

    model: str
    """llama.cpp's tokenizer kind: 'gpt2' (byte-level BPE) or 'llama' (SentencePiece)."""
    pre: str | None
    """llama.cpp's pre-tokenizer name (byte-level BPE only)."""
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    special: gguf.SpecialVocab
    add_bos: bool
    add_eos: bool
    chat_template: str | None

    def write(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.model == "llama":
            # Gemma 3's tokenizer adds no leading space (llama.cpp's converter writes the same).
            writer.add_add_space_prefix(False)
        self.special.add_special_token = {"bos": self.add_bos, "eos": self.add_eos}
        self.special.chat_template = self.chat_template
        self.special.add_to_gguf(writer, quiet=True)


def read_vocabulary(folder: Path, tokenizer: Any, n_vocab: int, *, pad_to: int | None) -> Vocabulary:
    """The vocabulary of ``tokenizer`` (a transformers tokenizer loaded from ``folder``).

    ``n_vocab`` is the embedding's row count; ``pad_to``, when set, pads the token list to that many entries
    with unused ``[PAD<id>]`` tokens (LLaMA: the embedding may be wider than the tokenizer), otherwise the list
    must not be longer than ``n_vocab``.
    """
    if (folder / "tokenizer.model").is_file() and not _is_byte_level(folder):
        vocab = _sentencepiece(folder, tokenizer)
    elif (folder / "tokenizer.json").is_file():
        vocab = _byte_level_bpe(folder, tokenizer)
    else:
        raise UserError(
            f"{folder} has no tokenizer (neither tokenizer.json nor tokenizer.model): save the tokenizer next to "
            "the weights (tokenizer.save_pretrained(folder)) and export again"
        )
    size = len(vocab.tokens)
    if pad_to is not None and size < pad_to:
        vocab.tokens += [f"[PAD{i}]" for i in range(size, pad_to)]
        vocab.types += [gguf.TokenType.UNUSED] * (pad_to - size)
        if vocab.scores is not None:
            vocab.scores += [-1000.0] * (pad_to - size)
    if len(vocab.tokens) > n_vocab:
        raise UserError(
            f"{folder}: the tokenizer has {len(vocab.tokens)} tokens but the embedding only {n_vocab} rows; "
            "resize the model's embeddings to the tokenizer (model.resize_token_embeddings) and save again"
        )
    special = gguf.SpecialVocab(folder, load_merges=vocab.model == "gpt2", n_vocab=len(vocab.tokens))
    if vocab.model == "gpt2" and not special.merges:
        raise UserError(f"{folder}/tokenizer.json has no BPE merges: llama.cpp cannot tokenize without them")
    add_bos, add_eos = _adds(tokenizer)
    template = getattr(tokenizer, "chat_template", None)
    return Vocabulary(
        vocab.model,
        vocab.pre,
        vocab.tokens,
        vocab.types,
        vocab.scores,
        special,
        add_bos,
        add_eos,
        template if isinstance(template, str) else None,
    )


def _is_byte_level(folder: Path) -> bool:
    path = folder / "tokenizer.json"
    if not path.is_file():
        return False
    return "ByteLevel" in json.dumps(_load_json(path).get("pre_tokenizer"))


def _load_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "save the tokenizer again (tokenizer.save_pretrained(folder))")


def _adds(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding with special tokens puts BOS first / EOS last: measured, not read from flags."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = len(full) > len(plain) and bos is not None and full[0] == bos
    add_eos = len(full) > len(plain) and eos is not None and full[-1] == eos
    return add_bos, add_eos


def _byte_level_bpe(folder: Path, tokenizer: Any) -> _Tokens:
    spec = _load_json(folder / "tokenizer.json")
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(
            f"{folder}/tokenizer.json is a {model.get('type')} tokenizer; GGUF export supports byte-level BPE "
            "(tokenizer.json) and SentencePiece (tokenizer.model)"
        )
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"), folder)
    by_id = {int(i): t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(max(by_id) + 1):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(str(added[i].content))
            # Special added tokens are control tokens (never produced by splitting text); the others are matched
            # whole in the text, as transformers does.
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return _Tokens("gpt2", pre, tokens, types, None)


def pre_tokenizer_name(pre_tokenizer: Any, folder: Path) -> str:
    """llama.cpp's name for a tokenizer.json pre-tokenizer, or a UserError naming what it does not implement."""
    signature = _split_signature(pre_tokenizer)
    for known, name in _PRE_TOKENIZERS:
        if signature == known:
            return name
    if isinstance(signature, dict) and signature.get("type") == "Sequence":
        parts = signature.get("pretokenizers") or []
        if len(parts) == 2 and parts[1] == {"type": "ByteLevel", "use_regex": False}:
            regex = (parts[0].get("pattern") or {}).get("Regex")
            if parts[0].get("type") == "Split" and regex in _REGEX_NAMES:
                return _REGEX_NAMES[regex]
    raise UserError(
        f"{folder}/tokenizer.json splits text with a pre-tokenizer llama.cpp has no name for "
        f"({json.dumps(pre_tokenizer)[:120]}); llama.cpp would tokenize differently, so the export stops. "
        "Supported: GPT-2, SmolLM, Llama 3 and Qwen2 byte-level splits, and SentencePiece (tokenizer.model)"
    )


def _split_signature(node: Any) -> Any:
    """The parts of a pre-tokenizer that decide how text is split (offset trimming and prefix spaces of
    ByteLevel do not: llama.cpp adds no prefix space to byte-level BPE)."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "ByteLevel":
            return {"type": "ByteLevel", "use_regex": bool(node.get("use_regex", True))}
        if kind == "Digits":
            return {"type": "Digits", "individual_digits": bool(node.get("individual_digits"))}
        if kind == "Sequence":
            return {"type": "Sequence", "pretokenizers": [_split_signature(p) for p in node.get("pretokenizers", [])]}
        if kind == "Split":
            return {"type": "Split", "pattern": node.get("pattern"), "behavior": node.get("behavior")}
    return node


def _sentencepiece(folder: Path, tokenizer: Any) -> _Tokens:
    try:
        spm = gguf.vocab.SentencePieceVocab(folder)
    except RuntimeError as e:  # gguf raises RuntimeError when the sentencepiece package is missing
        raise UserError(
            f"{folder} has a SentencePiece tokenizer (tokenizer.model); reading it needs the sentencepiece "
            "package: pip install sentencepiece"
        ) from e
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for text, score, kind in spm.all_tokens():
        tokens.append(text.decode("utf-8"))
        scores.append(float(score))
        types.append(int(kind))
    # Tokens transformers added on top of the SentencePiece model (Gemma's <start_of_turn>, ...) keep its kind.
    for i, token in tokenizer.added_tokens_decoder.items():
        if i < len(tokens):
            tokens[i] = str(token.content)
            types[i] = gguf.TokenType.CONTROL if token.special else gguf.TokenType.USER_DEFINED
    return _Tokens("llama", None, tokens, types, scores)
