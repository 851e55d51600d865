"""The one guard that keeps evaluation data out of training, read from the catalog's roles.

A split whose role is ``eval`` is refused as training input by the name a training config would use, by any
of its files (wherever the data folder is), and by its Hub split. The one exception is declared data too: a
training source may read an evaluation split's file when that file is its own declared local file (PubMedQA's
labeled file, whose reader leaves the test PMIDs out; MedMCQA's only local copy, which mixtures flag).
Decontamination then removes, row by row, whatever still overlaps an evaluation item.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from aloekit.catalog import DATASETS, HubRef, benchmarks, refused_names, splits
from aloekit.errors import UserError

NEVER = "it may never enter training data"


@cache
def evaluation_files() -> dict[str, str]:
    """Files (paths or globs inside a data folder) that hold evaluation data, with what each is."""
    files: dict[str, str] = {}
    for bench, use in benchmarks():
        files |= {f: f"the {bench.name} benchmark" for f in use.split.files if f not in files}
    for refused in refused_names():
        files |= {f: refused.name for f in refused.files if f not in files}
    return files


def own_file(source: str | None) -> str | None:
    """The local file (or glob) a training source declares as its own."""
    dataset = DATASETS.get(source or "")
    split = dataset.training_split("local") if dataset else None
    return split.files[0] if split and split.files else None


def refuse_name(name: str) -> None:
    """A one-line error when ``name`` is an evaluation set (a benchmark, or a safety / bias prompt set) and not
    also a training source (``medmcqa`` names both: the source reads the Hub's train split)."""
    dataset = DATASETS.get(name)
    if dataset is not None and dataset.source is not None:
        return
    if any(bench.name == name for bench, _ in benchmarks()):
        raise UserError(f"{name} is an evaluation set (the {name} benchmark); {NEVER}")
    for refused in refused_names():
        if refused.name == name:
            raise UserError(f"{name} is an evaluation set ({refused.description.rstrip('.')}); {NEVER}")


def refuse_file(path: Path, source: str | None = None) -> None:
    """A one-line error when ``path`` is a file of an evaluation split, unless it is ``source``'s own file."""
    own = own_file(source)
    for pattern, what in evaluation_files().items():
        if pattern == own:
            continue
        if _matches(path, pattern):
            owners = [name for name in DATASETS if own_file(name) == pattern]
            note = f" (only the '{owners[0]}' source may read it; see its description)" if owners else ""
            raise UserError(f"{path} is an evaluation set ({what}); {NEVER}{note}")


def refuse_hub(ref: HubRef) -> None:
    """A one-line error when a Hub split is an evaluation split: a benchmark's split exactly, any split of a
    Hub dataset that holds only an evaluation set."""
    asked = {s.split("[")[0].strip() for s in ref.split.split("+")}
    for bench, use in benchmarks():
        hub = use.split.hub
        if hub and (hub.path, hub.name) == (ref.path, ref.name) and hub.split in asked:
            raise UserError(
                f"{ref.path} ({ref.name or 'default'}, {hub.split}) is an evaluation set (the {bench.name} benchmark); "
                f"{NEVER}"
            )
    for refused in refused_names():
        if refused.hub and refused.hub.path == ref.path:
            raise UserError(f"{ref.path} is an evaluation set ({refused.name}); {NEVER}")


def refuse_checked(
    reads: Iterable[tuple[str, str | None, Path | None]],
    data_dir: Path | None,
    coverage: Mapping[str, Mapping[str, Any]],
) -> None:
    """A one-line error, before any work, when a training source (label, source name, path) reads a file that
    decontamination checks: every row would be removed anyway. A file that holds an evaluation split *and* the
    training pool its source reads apart (PubMedQA's labeled file) is not such a file."""
    shared = {bench.name for bench, use in benchmarks() if _pool_beside_test(use.dataset.name, use.split.files)}
    checked = {
        Path(c["path"]).resolve(): name
        for name, c in coverage.items()
        if c.get("status") == "checked" and c.get("path") and name not in shared
    }
    for label, source, path in reads:
        local = own_file(source)
        if path is None and local and data_dir is not None:
            path = data_dir / local if "*" not in local else None
        if path is not None and path.resolve() in checked:
            bench = checked[path.resolve()]
            raise UserError(
                f"source '{label}' reads {path}, the evaluation file of benchmark '{bench}': drop the source, "
                f"or add '{bench}' to decontamination.exclude (and never report {bench} results for this model)"
            )


def _pool_beside_test(dataset: str, files: tuple[str, ...]) -> bool:
    """Whether the dataset's training split shares a file with this evaluation split but is a different split."""
    for use in splits():
        if use.dataset.name == dataset and use.split.role == "train" and set(use.split.files) & set(files):
            return True
    return False


def _matches(path: Path, pattern: str) -> bool:
    """Whether the path ends like the data-folder-relative pattern (``*`` may span folders), wherever it is."""
    for candidate in {path, path.resolve()}:
        parts = candidate.parts
        if any(fnmatch.fnmatchcase("/".join(parts[-k:]), pattern) for k in range(1, len(parts) + 1)):
            return True
    return False


__all__ = ["evaluation_files", "own_file", "refuse_checked", "refuse_file", "refuse_hub", "refuse_name"]
