"""Which tensors a merged model has, in which order, and where each input's copy of one lives (tied embeddings
lend their matrix as ``lm_head``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aloekit.errors import UserError
from aloekit.merge.inputs import InputModel, TensorSource, _config_value

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|embed_in)\.weight$")
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.weight$")


# --- planning ------------------------------------------------------------------------------------------------


def layer_index(name: str) -> int | None:
    """The layer a tensor belongs to (``model.layers.7.mlp...`` -> 7), or None for embeddings, norms, heads."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def _ties(cfg: Mapping[str, Any], names: Mapping[str, object]) -> bool:
    explicit = _config_value(cfg, "tie_word_embeddings")
    if explicit is not None:
        return bool(explicit)
    return not any(_HEAD.search(n) for n in names)  # no head saved and no word on it: it must be tied


def _order_key(name: str, position: int) -> tuple[int, int, int]:
    layer = layer_index(name)
    if layer is not None:
        return (1, layer, position)
    return (0 if _EMBED.search(name) or "embed" in name else 2, 0, position)


def _embedding_name(model: InputModel) -> str | None:
    return next((n for n in model.tensors if _EMBED.search(n) and layer_index(n) is None), None)


def _output_names(inputs: list[InputModel], out_tie: bool, notes: list[str], config_source: InputModel) -> list[str]:
    positions: dict[str, int] = {}
    for model in inputs:
        for name in model.tensors:
            positions.setdefault(name, len(positions))
    names = [n for n in positions if not (out_tie and _HEAD.search(n))]
    if out_tie:
        for model in inputs:
            if any(_HEAD.search(n) for n in model.tensors) and not _ties(model.config, model.tensors):
                notes.append(
                    f"model '{model.reference}' has its own lm_head, but the output ties it to the embeddings "
                    f"(config from '{config_source.reference}'): that lm_head is not merged"
                )
    return sorted(names, key=lambda n: _order_key(n, positions[n]))


def _source_for(model: InputModel, name: str, inputs: list[InputModel]) -> TensorSource:
    source = model.tensors.get(name)
    if source is not None:
        return source
    if _HEAD.search(name):
        embedding = _embedding_name(model)
        if _ties(model.config, model.tensors) and embedding is not None:
            return model.tensors[embedding]  # tied: the embedding matrix is this model's lm_head
        if embedding is not None:
            raise UserError(
                f"model '{model.reference}' has no tensor '{name}' and its config.json says "
                "tie_word_embeddings: false: the checkpoint is incomplete; re-download or re-save it"
            )
    holder = next((m for m in inputs if name in m.tensors), None)
    holder_text = f", which model '{holder.reference}' has" if holder is not None else ""
    raise UserError(
        f"model '{model.reference}' has no tensor '{name}'{holder_text}: models to merge must have the same "
        "tensors (same architecture and size)"
    )
