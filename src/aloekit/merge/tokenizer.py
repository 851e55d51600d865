"""Choosing the merged model's tokenizer and chat template."""

from __future__ import annotations

from collections import Counter

from aloekit.errors import UserError
from aloekit.merge.checks import _vocab_error
from aloekit.merge.config import BUILTIN_CHAT_TEMPLATES, MergeConfig
from aloekit.merge.inputs import InputModel, _config_value, _file_digest, _resolve_input, _template_of

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def _tokenizer_source(
    config: MergeConfig,
    inputs: list[InputModel],
    base: int | None,
    first: InputModel,
    by_ref: dict[str, int],
    allow_pickle: bool,
    trust_remote_code: bool,
) -> InputModel:
    source = config.effective_tokenizer_source
    if source is None:
        return inputs[base] if base is not None else first
    if source == "base":
        if base is None:
            raise UserError("tokenizer_source is 'base' but there is no base_model: add base_model or name a model")
        return inputs[base]
    if source in by_ref:
        return inputs[by_ref[source]]
    model = _resolve_input(source, config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    for other in inputs:
        if other.path == model.path:
            return other
    vocab, ref_vocab = _config_value(model.config, "vocab_size"), _config_value(first.config, "vocab_size")
    if vocab is not None and ref_vocab is not None and vocab != ref_vocab:
        raise _vocab_error(model, vocab, first, ref_vocab)
    return model


def _tokenizer_notes(inputs: list[InputModel], source: InputModel) -> list[str]:
    mine = _file_digest(source.path / "tokenizer.json")
    if mine is None:
        return []
    differ = [m.reference for m in inputs if (d := _file_digest(m.path / "tokenizer.json")) and d != mine]
    if not differ:
        return []
    return [
        f"the tokenizer of {', '.join(repr(r) for r in differ)} differs from '{source.reference}' (whose tokenizer "
        "the output gets) though the vocabulary sizes match: check that the token ids mean the same"
    ]


def _chat_template(config: MergeConfig, inputs: list[InputModel]) -> str | None:
    value = config.chat_template
    if value is None:
        return None
    if value in BUILTIN_CHAT_TEMPLATES:
        return BUILTIN_CHAT_TEMPLATES[value]
    if value == "auto":  # the most common template among the inputs (mergekit's rule); first seen wins a tie
        templates = [t.strip() for m in inputs if (t := _template_of(m.path))]
        return Counter(templates).most_common(1)[0][0] if templates else None
    return value
