"""A training run's folder, shared by SFT and DPO: who owns it, claiming it for a new or resumed run, its JSON
records (manifests, metrics) and its checkpoints.

Only the first process of a distributed run (``accelerate launch`` sets RANK) checks and writes these files; every
process trains. Records are written atomically with the user's umask (readable by others under the usual 022), so
a killed run never leaves a half-written manifest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aloekit import io
from aloekit.errors import UserError
from aloekit.provenance import package_versions

VERSIONED = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
"""Packages whose versions a training manifest records."""


def library_versions() -> dict[str, str]:
    return package_versions(*VERSIONED)


def is_main() -> bool:
    """The first process of a distributed run (accelerate / torchrun set RANK), or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_text(path: Path, text: str) -> None:
    """A run record, written by the first process only (one writer per file in a distributed run)."""
    if is_main():
        io.atomic_write_text(path, text)


def write_json(path: Path, value: Any) -> None:
    if is_main():
        io.write_json(path, value, default=str)


def failure(error: BaseException) -> dict[str, str]:
    """The manifest fields recording that a run failed and why, so the next run in the folder knows it is over
    (and takes it over if it left no checkpoint) instead of taking it for a run still in progress."""
    reason = " ".join(str(error).split())[:300] or type(error).__name__
    return {"status": "failed", "failed": now(), "error": reason}


# --- who owns a run folder ---------------------------------------------------------------------------------------


def run_owner() -> dict[str, Any]:
    """The process writing a run, recorded in its manifest so a later run can tell a live run from a dead one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def abandoned(manifest: Mapping[str, Any] | None) -> str | None:
    """Why the run recorded in ``manifest`` is over though not finished (it failed, or its process is gone), or
    None when it finished, may still be running, or cannot be told (another host, a manifest without a pid)."""
    if not manifest:
        return None
    status = manifest.get("status")
    if status == "failed":
        return f"it failed ({manifest.get('error') or 'no reason recorded'})"
    if status != "running":
        return None
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return f"its process {pid} on {host} is gone"
    except PermissionError:  # alive, owned by another user
        return None
    return None


def claim_out(out: Path, resume: bool, *, trained: Callable[[], bool]) -> tuple[bool, str | None]:
    """Check that ``out`` can take this run; return (resume, message).

    A run that failed, or whose process is gone, before ``trained()`` (its first checkpoint) has nothing worth
    keeping: it is taken over (started afresh, with the message) instead of blocking the corrected rerun until the
    user deletes the folder. A run with checkpoints is continued with --resume; a live run on this host is refused.
    """
    if not is_main():
        return resume, None  # the first process has checked (and is about to write into) the folder
    if out.exists() and not out.is_dir():
        raise UserError(f"out {out} is a file: name a folder")
    held = out.is_dir() and any(out.iterdir())
    if held:
        previous = read_json(out / "manifest.json") or {}
        why = abandoned(previous)
        if why is not None and not trained():
            return False, f"taking over {out}: its earlier run stopped before its first checkpoint ({why})"
        if previous.get("status") == "running" and why is None and previous.get("host") == socket.gethostname():
            pid = previous.get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                raise UserError(
                    f"out {out} is in use by a running training (pid {pid}): wait for it to finish, or choose "
                    "another folder"
                )
    if held and not resume:
        raise UserError(
            f"out {out} already holds a run: pass --resume to continue it, or choose a new folder (or delete it)"
        )
    return resume, None


# --- checkpoints -------------------------------------------------------------------------------------------------


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders whose trainer_state.json (written last) is present and valid, oldest first."""
    found: list[tuple[int, Path]] = []
    if not folder.is_dir():
        return []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if not (path.is_dir() and suffix.isdigit()):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(folder: Path) -> str | None:
    """The checkpoint ``--resume`` continues from (as the trainer takes it: a path string), or None."""
    complete = complete_checkpoints(folder)
    return str(complete[-1]) if complete else None


def discard_incomplete_checkpoints(folder: Path) -> list[str]:
    """Delete checkpoint folders a kill left half-written, so neither resume nor rotation picks them."""
    complete = set(complete_checkpoints(folder))
    removed = []
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        if path.is_dir() and path not in complete:
            shutil.rmtree(path)
            removed.append(path.name)
    return removed
