"""Stages in order, each skipped when it already finished with the same inputs: the engine of ``aloe run``.

Every stage writes ``ROOT/<stage>/manifest.json`` (this module is its only writer): its status (``running`` while it
works, ``finished`` after), the hash of its inputs (its own config section plus the output hashes of the stages it
reads), its outputs and their hash, versions, seed, start and finish times. A rerun skips a stage whose manifest
says ``finished`` with the same input hash; anything else (never run, killed mid-way, config or upstream output
changed) runs again, and so does every stage after it whose inputs changed as a result. Stages resume their own
long work (checkpoints, request caches), so a stage killed mid-way loses at most its last chunk.

A stage returns a typed :class:`StageOutputs`; the runner records it as JSON in the manifest and hands it, read
back into the same type, to the stages that read it.

``from_stage`` reruns a stage and everything after it even if finished; ``only`` reruns one stage (finished or
not), which needs the stages before it finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from aloekit.errors import UserError
from aloekit.io import write_json
from aloekit.models import file_sha256
from aloekit.provenance import package_versions

__all__ = ["Finished", "Stage", "StageContext", "StageOutputs", "output_hash", "run_stages"]

JSONDict = dict[str, Any]
"""A manifest, or a stage's outputs as a manifest records them: JSON values, paths as strings."""


class StageOutputs(BaseModel):
    """What a stage made, typed. Recorded in its manifest as JSON (paths as strings, unset optional parts left
    out); subclasses whose record is not a plain dump of their fields override both conversions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_manifest(self) -> JSONDict:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_manifest(cls, outputs: Mapping[str, Any]) -> Self:
        return cls.model_validate(dict(outputs))


OutputT = TypeVar("OutputT", bound=StageOutputs)


@dataclass(frozen=True)
class Finished:
    """An earlier stage as a later one sees it: its typed outputs and what its manifest says about the run."""

    name: str
    outputs: StageOutputs
    output_hash: str
    seconds: float | None


@dataclass
class StageContext:
    """What a stage's function receives: its folder, its config section, and the outputs of earlier stages."""

    folder: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    upstream: Mapping[str, Finished] = field(default_factory=dict)
    """Earlier stages this one reads, by stage name."""
    seed: int = 0
    log: Callable[[str], None] = lambda _: None
    resume: bool = False
    """True when this stage was killed earlier with the same inputs: its folder keeps the partial work (checkpoints,
    caches) to continue from. False: the folder was emptied first, so nothing of another config is reused."""

    def outputs(self, stage: str, kind: type[OutputT]) -> OutputT:
        """The typed outputs of earlier stage ``stage`` (which this stage declares it reads)."""
        value = self.upstream[stage].outputs
        if not isinstance(value, kind):
            raise TypeError(f"stage {stage} made {type(value).__name__}, not {kind.__name__}")
        return value


@dataclass(frozen=True)
class Stage(Generic[OutputT]):
    name: str
    run: Callable[[StageContext], OutputT]
    """Does the work in ``ctx.folder`` and returns what it made."""
    outputs: type[OutputT]
    """The type of what it makes: earlier runs' manifests are read back into it."""
    config: Mapping[str, Any] = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    """Earlier stages whose outputs this one uses (their output hashes enter its input hash)."""


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# Files that record how and when an output was made, not what later stages read: a model card (dated, and the report
# stage writes one into the final model's folder), the merge record (creation time, seconds), training manifests and
# metrics (timings). Left out of the output hash, so rerunning a deterministic stage leaves later stages up to date.
PROVENANCE_FILES = frozenset({"README.md", "aloe_merge.json", "manifest.json", "metrics.json"})


def output_hash(outputs: Mapping[str, Any]) -> str:
    """Hash of a stage's recorded outputs: the values, and for every value that is an existing file or folder, the
    names and contents of its files (provenance files, :data:`PROVENANCE_FILES`, left out).

    Contents, not modification times: a stage rerun (``--only``, ``--from``) that writes the same files leaves every
    later stage up to date, and one that writes different files makes them stale. Computed once, when the stage
    finishes (about 1 s per GB)."""
    described: dict[str, Any] = {}
    for key, value in sorted(outputs.items()):
        described[key] = value
        if isinstance(value, str) and value and Path(value).exists():
            path = Path(value)
            if path.is_file():
                files = [path]  # a file named as an output is hashed whatever its name
            else:
                files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in PROVENANCE_FILES)
            described[f"{key}:files"] = [(str(p.relative_to(path.parent)), file_sha256(p)) for p in files]
    return _digest(described)


def _manifest(folder: Path) -> JSONDict | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn manifest means the stage did not finish: it runs again
    return manifest if isinstance(manifest, dict) else None


def _finished(stage: Stage[Any], manifest: JSONDict | None, inputs: str) -> Finished | None:
    """The stage as its manifest records it when it finished with these inputs; None when it must run (again)."""
    if manifest is None or manifest.get("status") != "finished" or manifest.get("input_hash") != inputs:
        return None
    try:
        outputs = stage.outputs.from_manifest(manifest.get("outputs") or {})
    except (ValidationError, TypeError, ValueError):
        return None  # outputs this version cannot read: made anew rather than guessed at
    return Finished(stage.name, outputs, str(manifest.get("output_hash")), manifest.get("seconds"))


def _write(folder: Path, manifest: JSONDict) -> None:
    write_json(folder / "manifest.json", manifest, default=str)


def _check_flags(names: list[str], from_stage: str | None, only: str | None) -> None:
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise UserError(f"{flag} {value}: no such stage; the stages are {', '.join(names)}")


def run_stages(
    stages: Sequence[Stage[Any]],
    root: Path,
    *,
    seed: int = 0,
    from_stage: str | None = None,
    only: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, JSONDict]:
    """Run ``stages`` in order under ``root``; return the manifest of every stage run or found finished, by name.
    With ``only``, the stages after it are neither run nor required."""
    names = [s.name for s in stages]
    _check_flags(names, from_stage, only)
    root.mkdir(parents=True, exist_ok=True)
    manifests: dict[str, JSONDict] = {}
    done: dict[str, Finished] = {}
    forced = False
    for stage in stages:
        folder = root / stage.name
        unknown = [r for r in stage.reads if r not in names[: names.index(stage.name)]]
        if unknown:
            raise ValueError(f"stage {stage.name} reads {unknown[0]}, which does not run before it")
        forced = forced or stage.name == from_stage
        upstream = {r: done[r] for r in stage.reads if r in done}
        reads = {r: f.output_hash for r, f in upstream.items()}
        inputs = _digest({"config": stage.config, "upstream": reads, "seed": seed})
        previous = _manifest(folder)
        finished = _finished(stage, previous, inputs)
        if only is not None and stage.name != only:
            if finished is None:
                raise UserError(f"--only {only} needs stage {stage.name} finished first: run without --only")
            manifests[stage.name], done[stage.name] = previous or {}, finished
            continue
        if finished is not None and not forced and stage.name != only:
            log(f"{stage.name}: finished earlier with the same inputs, skipped")
            manifests[stage.name], done[stage.name] = previous or {}, finished
            continue
        missing = [r for r in stage.reads if r not in upstream]
        if missing:
            raise UserError(f"stage {stage.name} needs {missing[0]} first")
        # A stage killed with these same inputs continues from its partial work; anything else (other inputs, a
        # forced rerun) starts from an empty folder, so no checkpoint or cache of another config leaks in.
        resume = previous is not None and previous.get("status") == "running" and previous.get("input_hash") == inputs
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        manifest: JSONDict = {
            "stage": stage.name,
            "status": "running",
            "input_hash": inputs,
            "config": dict(stage.config),
            "reads": reads,
            "seed": seed,
            "versions": package_versions("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        }
        _write(folder, manifest)
        log(f"{stage.name}: " + ("resuming its partial work" if resume else "running"))
        made = stage.run(StageContext(folder, stage.config, upstream, seed, log, resume))
        if not isinstance(made, stage.outputs):
            raise TypeError(f"stage {stage.name} returned {type(made).__name__}, not {stage.outputs.__name__}")
        recorded = made.to_manifest()
        manifest.update(
            status="finished",
            outputs=recorded,
            output_hash=output_hash(recorded),
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seconds=round(time.time() - started, 1),
        )
        _write(folder, manifest)
        manifests[stage.name] = manifest
        done[stage.name] = Finished(stage.name, made, manifest["output_hash"], manifest["seconds"])
        log(f"{stage.name}: finished in {manifest['seconds']} s")
        if stage.name == only:
            break  # --only: the stages after it are neither run nor required
    return manifests
