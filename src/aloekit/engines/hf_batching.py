"""How the transformers backend groups and batches requests: shared contexts, shared prompt prefixes,
left padding, longest first. Pure list and tensor bookkeeping; the model runs in :mod:`aloekit.engines.hf`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Continuations scored together per forward, relative to batch_size: contexts dominate the cost, continuations
# are short, so a continuation pass can be wider than a context pass.
_CONTINUATIONS_PER_CONTEXT_SLOT = 4
# Shortest common prefix (tokens) worth a separate forward: below it, the extra call costs more than it saves.
_MIN_SHARED_PREFIX = 8


@dataclass
class _Group:
    """Continuations that share one tokenized context."""

    context: tuple[int, ...]
    members: list[tuple[int, tuple[int, ...]]]  # (request index, continuation token ids)


def _shared_prefix(contexts: list[list[int]]) -> int:
    """Length of the token prefix all ``contexts`` share, leaving each at least one token of its own (the last
    context token's logits predict the continuation); 0 when it is too short to be worth a separate pass."""
    n = _common_prefix(contexts)
    return n if n >= _MIN_SHARED_PREFIX else 0


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows left-padded to the longest (every row ends at the same column), and their attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
    return ids, mask


def _common_prefix(prompts: list[list[int]]) -> int:
    """Tokens every prompt shares from the start, leaving each at least one of its own."""
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return n


def _prefix_batches(members: list[int], encoded: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Batches of clusters of request indices: prompts that share most of their tokens (an ensemble's runs of one
    question, samples of one prompt) form a cluster; clusters are batched longest first, split at batch_size.

    Sorting the prompts' tokens puts prompts with a long common prefix next to each other. A prompt joins the
    cluster before it when they share at least half of the shorter prompt: prompts that only share a system
    prompt stay apart, so each cluster's prefix is worth running once."""
    ordered = sorted(members, key=lambda i: encoded[i])
    clusters: list[list[int]] = []
    for i in ordered:
        if clusters:
            head = encoded[clusters[-1][0]]
            common = _common_prefix([head, encoded[i]])
            if common >= _MIN_SHARED_PREFIX and common * 2 >= min(len(head), len(encoded[i])):
                clusters[-1].append(i)
                continue
        clusters.append([i])
    pieces = [c[s : s + batch_size] for c in clusters for s in range(0, len(c), batch_size)]
    pieces.sort(key=lambda c: -max(len(encoded[i]) for i in c))
    batches: list[list[list[int]]] = []
    rows = 0
    for piece in pieces:
        if batches and rows + len(piece) <= batch_size:
            batches[-1].append(piece)
            rows += len(piece)
        else:
            batches.append([piece])
            rows = len(piece)
    return batches


def _batches_of_groups(groups: list[_Group], max_groups: int, max_rows: int) -> Iterator[list[_Group]]:
    batch: list[_Group] = []
    rows = 0
    for g in groups:
        if batch and (len(batch) == max_groups or rows + len(g.members) > max_rows):
            yield batch
            batch, rows = [], 0
        batch.append(g)
        rows += len(g.members)
    if batch:
        yield batch
