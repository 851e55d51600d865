"""Checks that a merge's inputs can be merged: input counts, architectures, vocabularies, slices and shapes."""

from __future__ import annotations

from aloekit.errors import UserError
from aloekit.merge.config import MergeConfig
from aloekit.merge.inputs import SUPPORTED_DTYPES, InputModel, TensorSource, _config_value
from aloekit.merge.layout import _EMBED, _HEAD, layer_index


def _check_input_count(method: str, entries: tuple[int, ...], base: int | None) -> None:
    count = len(entries) + (1 if base is not None and base not in entries else 0)
    if method == "slerp" and count != 2:
        raise UserError(
            f"merge_method slerp interpolates exactly two models (the base and one other), got {count}: "
            "list two models and make one of them base_model"
        )
    if method == "model_stock" and count < 3:
        raise UserError(
            f"merge_method model_stock needs a base_model and at least two other models, got {count} in all: add models"
        )


def _check_compatible(first: InputModel, inputs: list[InputModel]) -> None:
    def arch(m: InputModel) -> tuple[str | None, str | None]:
        archs = m.config.get("architectures") or [None]
        return (archs[0], m.config.get("model_type"))

    for model in inputs:
        if arch(model) != arch(first):
            (a, at), (b, bt) = arch(model), arch(first)
            raise UserError(
                f"model '{model.reference}' is {a} (model_type {at}) but model '{first.reference}' is {b} "
                f"(model_type {bt}): models to merge must share one architecture"
            )
    for model in inputs:
        vocab, ref_vocab = _config_value(model.config, "vocab_size"), _config_value(first.config, "vocab_size")
        if vocab is not None and ref_vocab is not None and vocab != ref_vocab:
            raise _vocab_error(model, vocab, first, ref_vocab)
    for model in inputs:
        if _num_layers(model) != _num_layers(first):
            raise UserError(
                f"model '{model.reference}' has {_num_layers(model)} layers but model '{first.reference}' has "
                f"{_num_layers(first)}: merging needs models of the same size (layer stacking is not supported)"
            )
    for model in inputs:
        for source in model.tensors.values():
            if source.dtype not in SUPPORTED_DTYPES:
                raise UserError(
                    f"model '{model.reference}': tensor '{source.key}' has dtype {source.dtype}, which merging does "
                    f"not support (quantized?): use an unquantized model in float32, float16 or bfloat16"
                )


def _vocab_error(model: InputModel, vocab: object, first: InputModel, ref_vocab: object) -> UserError:
    return UserError(
        f"model '{model.reference}' has a vocabulary of {vocab} tokens but model '{first.reference}' has "
        f"{ref_vocab}: merging models with different vocabularies needs tokenizer merging, which is not supported; "
        "merge models that share one tokenizer"
    )


def _num_layers(model: InputModel) -> int:
    value = _config_value(model.config, "num_hidden_layers", "n_layer", "num_layers")
    if isinstance(value, int) and value > 0:
        return value
    layers = {i for n in model.tensors if (i := layer_index(n)) is not None}
    return max(layers) + 1 if layers else 1


def _check_slices(config: MergeConfig, inputs: list[InputModel], by_ref: dict[str, int]) -> None:
    assert config.slices is not None
    if len(config.slices) != 1:
        raise UserError(
            f"{len(config.slices)} output slices (layer stacking) are not supported yet: use 'models:', or one "
            "slice whose sources each span all layers"
        )
    for source in config.slices[0].sources:
        n = _num_layers(inputs[by_ref[source.model]])
        if tuple(source.layer_range) != (0, n):
            raise UserError(
                f"slice source '{source.model}' takes layer_range {list(source.layer_range)}, but slices that pick "
                f"layer ranges are not supported yet: use [0, {n}] (all its layers) or 'models:'"
            )


def _check_shapes(name: str, inputs: list[InputModel], sources: tuple[TensorSource, ...]) -> None:
    ref_model, ref = inputs[0], sources[0]
    for model, source in zip(inputs, sources, strict=True):
        if source.shape == ref.shape:
            continue
        vocab_tensor = _EMBED.search(name) or _HEAD.search(name)
        if vocab_tensor and source.shape[1:] == ref.shape[1:] and source.shape and ref.shape:
            raise _vocab_error(model, source.shape[0], ref_model, ref.shape[0])
        raise UserError(
            f"tensor '{name}' has shape {list(source.shape)} in model '{model.reference}' but "
            f"{list(ref.shape)} in model '{ref_model.reference}': models to merge must have the same shapes"
        )
