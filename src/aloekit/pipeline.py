"""Stages in order, each skipped when it already finished with the same inputs: the engine of ``aloe run``.

Every stage writes ``ROOT/<stage>/manifest.json``: its status (``running`` while it works, ``finished`` after),
the hash of its inputs (its own config section plus the output hashes of the stages it reads), the hash of its
outputs, versions, seed, start and finish times. A rerun skips a stage whose manifest says ``finished`` with the
same input hash; anything else (never run, killed mid-way, config or upstream output changed) runs again, and so
does every stage after it whose inputs changed as a result. Stages resume their own long work (checkpoints,
request caches), so a stage killed mid-way loses at most its last chunk.

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
from typing import Any

from aloekit.errors import UserError
from aloekit.models import atomic_write_text, file_sha256
from aloekit.provenance import package_versions

__all__ = ["Stage", "StageContext", "output_hash", "run_stages"]


@dataclass
class StageContext:
    """What a stage's function receives: its folder, its config section, and the outputs of earlier stages."""

    folder: Path
    config: Mapping[str, Any]
    upstream: Mapping[str, Mapping[str, Any]]
    """Earlier stages' outputs (as their manifests record them), by stage name."""
    seed: int
    log: Callable[[str], None]
    resume: bool = False
    """True when this stage was killed earlier with the same inputs: its folder keeps the partial work (checkpoints,
    caches) to continue from. False: the folder was emptied first, so nothing of another config is reused."""


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[StageContext], dict[str, Any]]
    """Does the work in ``ctx.folder`` and returns its outputs: JSON-able, paths as strings."""
    config: Mapping[str, Any] = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    """Earlier stages whose outputs this one uses (their output hashes enter its input hash)."""


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def output_hash(outputs: Mapping[str, Any]) -> str:
    """Hash of a stage's outputs: the values, and for every value that is an existing file or folder, the names and
    contents of its files.

    Contents, not modification times: a stage rerun (``--only``, ``--from``) that writes the same files leaves every
    later stage up to date, and one that writes different files makes them stale. Computed once, when the stage
    finishes (about 1 s per GB)."""
    described: dict[str, Any] = {}
    for key, value in sorted(outputs.items()):
        described[key] = value
        if isinstance(value, str) and value and Path(value).exists():
            path = Path(value)
            files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
            described[f"{key}:files"] = [(str(p.relative_to(path.parent)), file_sha256(p)) for p in files]
    return _digest(described)


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn manifest means the stage did not finish: it runs again


def run_stages(
    stages: Sequence[Stage],
    root: Path,
    *,
    seed: int = 0,
    from_stage: str | None = None,
    only: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Run ``stages`` in order under ``root``; return every stage's manifest by name."""
    names = [s.name for s in stages]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise UserError(f"{flag} {value}: no such stage; the stages are {', '.join(names)}")
    root.mkdir(parents=True, exist_ok=True)
    manifests: dict[str, dict[str, Any]] = {}
    forced = False
    for stage in stages:
        folder = root / stage.name
        unknown = [r for r in stage.reads if r not in names[: names.index(stage.name)]]
        if unknown:
            raise ValueError(f"stage {stage.name} reads {unknown[0]}, which does not run before it")
        forced = forced or stage.name == from_stage
        upstream = {r: manifests[r] for r in stage.reads if r in manifests}
        inputs = _digest(
            {"config": stage.config, "upstream": {r: m["output_hash"] for r, m in upstream.items()}, "seed": seed}
        )
        previous = _manifest(folder)
        done = previous is not None and previous.get("status") == "finished" and previous.get("input_hash") == inputs
        if only is not None and stage.name != only:
            if not done:
                raise UserError(f"--only {only} needs stage {stage.name} finished first: run without --only")
            manifests[stage.name] = previous  # type: ignore[assignment]
            continue
        if done and not forced and stage.name != only:
            log(f"{stage.name}: finished earlier with the same inputs, skipped")
            manifests[stage.name] = previous  # type: ignore[assignment]
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
        manifest: dict[str, Any] = {
            "stage": stage.name,
            "status": "running",
            "input_hash": inputs,
            "config": dict(stage.config),
            "reads": {r: m["output_hash"] for r, m in upstream.items()},
            "seed": seed,
            "versions": package_versions("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        }
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        log(f"{stage.name}: " + ("resuming its partial work" if resume else "running"))
        outputs = stage.run(StageContext(folder, stage.config, upstream, seed, log, resume))
        manifest.update(
            status="finished",
            outputs=outputs,
            output_hash=output_hash(outputs),
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seconds=round(time.time() - started, 1),
        )
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        manifests[stage.name] = manifest
        log(f"{stage.name}: finished in {manifest['seconds']} s")
        if stage.name == only:
            break  # --only: the stages after it are neither run nor required
    return manifests
