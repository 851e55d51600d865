"""How far a recipe stage moved the weights: ``||W_new - W_old|| / ||W_old||`` over all parameters together.

A stage that reports better scores but barely moved its weights (a relative change of 1e-6) did not train; one
that moved them by 50% may have forgotten what the base knew. The two models' ``*.safetensors`` files are read
tensor by tensor, and a large tensor in blocks of rows, so memory stays at a few tens of MiB whatever the model.

Tied weights: a model that ties its output layer to its embedding may store only the embedding; when one folder
has ``lm_head.weight`` and the other does not, the other's embedding stands in for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from aloekit.errors import UserError
from aloekit.models import safetensors_header

__all__ = ["TIED", "relative_change"]

TIED: dict[str, tuple[str, ...]] = {
    "lm_head.weight": ("model.embed_tokens.weight", "transformer.wte.weight", "model.decoder.embed_tokens.weight"),
}
"""An output layer a model may leave out of its files, and the embeddings it is then tied to."""

# Elements held at once per tensor block: 4M (16 MiB in float32) for each of the two models.
_BLOCK_ELEMENTS = 1 << 22


def relative_change(old_folder: Path, new_folder: Path) -> dict[str, Any]:
    """The relative L2 change from ``old_folder``'s weights to ``new_folder``'s (two local safetensors folders).

    Returns ``{"relative_l2", "tensors", "parameters", "largest": {"name", "relative_l2"}}``: the change over all
    parameters together, how many tensors and parameters were compared, and the tensor that moved most relative
    to its own norm (tensors whose old norm is 0 are left out of that ranking). Raises :class:`UserError` when
    a folder has no safetensors files or the architectures differ (a tensor only on one side, another shape).
    """
    old_folder, new_folder = Path(old_folder), Path(new_folder)
    old_files, new_files = _tensor_files(old_folder), _tensor_files(new_folder)
    matched = _matched(old_files, new_files, old_folder, new_folder)
    diff_total = old_total = 0.0
    parameters = 0
    largest: tuple[str, float] | None = None
    with ExitStack() as stack:
        import torch
        from safetensors import safe_open

        handles = {
            path: stack.enter_context(safe_open(str(path), framework="pt"))
            for path in {*old_files.values(), *new_files.values()}
        }
        for name, new_name, old_name in matched:
            old, new = handles[old_files[old_name]], handles[new_files[new_name]]
            shape, new_shape = list(old.get_slice(old_name).get_shape()), list(new.get_slice(new_name).get_shape())
            if shape != new_shape:
                raise UserError(
                    f"{new_folder} and {old_folder} have different architectures: tensor {name} is {new_shape} "
                    f"against {shape}; compare models of one architecture"
                )
            diff_sq = old_sq = 0.0
            for old_block, new_block in zip(_blocks(old, old_name, shape), _blocks(new, new_name, shape), strict=True):
                # Squares summed in float64: a change of 1e-6 on a billion weights must not round away.
                diff_sq += float(torch.linalg.vector_norm(new_block - old_block, dtype=torch.float64)) ** 2
                old_sq += float(torch.linalg.vector_norm(old_block, dtype=torch.float64)) ** 2
            diff_total += diff_sq
            old_total += old_sq
            parameters += math.prod(shape)
            if old_sq > 0 and (largest is None or diff_sq / old_sq > largest[1]):
                largest = (name, diff_sq / old_sq)
    return {
        "relative_l2": math.sqrt(diff_total / old_total) if old_total > 0 else (0.0 if diff_total == 0 else math.inf),
        "tensors": len(matched),
        "parameters": parameters,
        "largest": {"name": largest[0], "relative_l2": math.sqrt(largest[1])} if largest else None,
    }


def _tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    if not folder.is_dir():
        raise UserError(f"model folder not found: {folder}")
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UserError(f"no *.safetensors files in {folder}: weight changes are read from safetensors only")
    return {name: shard for shard in shards for name in safetensors_header(shard)}


def _matched(
    old: dict[str, Path], new: dict[str, Path], old_folder: Path, new_folder: Path
) -> list[tuple[str, str, str]]:
    """``(name, name in new's files, name in old's files)`` of every tensor to compare: the same name, except
    for an output layer one side left out, read there from the embedding it is tied to."""
    old_source, new_source = {n: n for n in old}, {n: n for n in new}
    for head, embeddings in TIED.items():
        for source, other in ((old_source, new_source), (new_source, old_source)):
            tied = next((e for e in embeddings if e in source), None)
            if head in other and head not in source and tied is not None:
                source[head] = tied
    for name in [*old_source, *new_source]:
        if name not in old_source or name not in new_source:
            only = old_folder if name in old_source else new_folder
            raise UserError(
                f"{new_folder} and {old_folder} have different architectures: tensor {name} is only in {only}; "
                "compare models of one architecture"
            )
    return [(name, new_source[name], old_source[name]) for name in new_source]


def _blocks(handle: Any, name: str, shape: list[int]) -> Iterator[Any]:
    """A tensor's values in blocks of whole rows (the tensor at once when it is small), as float32 (bf16 and fp16
    exactly) or float64."""
    total = math.prod(shape)
    if not shape or total <= _BLOCK_ELEMENTS:
        yield _widened(handle.get_tensor(name))
        return
    view = handle.get_slice(name)
    rows = max(1, _BLOCK_ELEMENTS // max(1, total // shape[0]))
    for start in range(0, shape[0], rows):
        yield _widened(view[start : start + rows])


def _widened(tensor: Any) -> Any:
    import torch

    return tensor if tensor.dtype == torch.float64 else tensor.to(torch.float32)
