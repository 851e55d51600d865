"""Specification of the stage runner behind ``aloe run`` (aloekit.pipeline): finished stages are skipped, killed
or changed ones rerun, and changes flow downstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aloekit.errors import UserError
from aloekit.pipeline import Stage, StageContext, run_stages


class Recorder:
    """Three fake stages (data -> train -> report) that write files and count their runs; one can be made to
    die mid-way, as a killed process would."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.die_in: str | None = None

    def stage(self, name: str, reads: tuple[str, ...] = (), **config: Any) -> Stage:
        def run(ctx: StageContext) -> dict[str, Any]:
            self.runs.append(name)
            (ctx.folder / "partial.txt").write_text("started")
            if self.die_in == name:
                raise KeyboardInterrupt(f"killed during {name}")
            parts = [Path(m["outputs"]["file"]).read_text() for m in ctx.upstream.values()]
            out = ctx.folder / "out.txt"
            out.write_text("+".join([*parts, f"{name}{dict(config)}"]))
            return {"file": str(out)}

        return Stage(name, run, config, reads)

    def stages(self, **train_config: Any) -> list[Stage]:
        return [self.stage("data"), self.stage("train", ("data",), **train_config), self.stage("report", ("train",))]


def test_a_rerun_skips_every_finished_stage(tmp_path: Path) -> None:
    rec = Recorder()
    first = run_stages(rec.stages(lr=1), tmp_path)
    assert rec.runs == ["data", "train", "report"]
    assert all(m["status"] == "finished" for m in first.values())
    rec.runs.clear()
    run_stages(rec.stages(lr=1), tmp_path)
    assert rec.runs == []


@pytest.mark.parametrize("victim", ["data", "train", "report"])
def test_a_stage_killed_mid_way_reruns_alone_and_the_finished_ones_are_not_redone(tmp_path: Path, victim: str) -> None:
    rec = Recorder()
    rec.die_in = victim
    with pytest.raises(KeyboardInterrupt):
        run_stages(rec.stages(lr=1), tmp_path)
    manifest = json.loads((tmp_path / victim / "manifest.json").read_text())
    assert manifest["status"] == "running"  # never mistaken for finished
    order = ["data", "train", "report"]
    rec.die_in, rec.runs = None, []
    run_stages(rec.stages(lr=1), tmp_path)
    assert rec.runs == order[order.index(victim) :]
    assert (tmp_path / "report" / "out.txt").read_text() == "data{}+train{'lr': 1}+report{}"


def test_a_changed_config_reruns_that_stage_and_what_depends_on_its_output(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(lr=1), tmp_path)
    rec.runs.clear()
    manifests = run_stages(rec.stages(lr=2), tmp_path)
    assert rec.runs == ["train", "report"]
    assert manifests["report"]["reads"]["train"] == manifests["train"]["output_hash"]
    assert (tmp_path / "report" / "out.txt").read_text() == "data{}+train{'lr': 2}+report{}"


def test_from_reruns_a_stage_and_everything_after_only_runs_one(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(), tmp_path)
    rec.runs.clear()
    run_stages(rec.stages(), tmp_path, from_stage="train")
    assert rec.runs == ["train", "report"]
    rec.runs.clear()
    run_stages(rec.stages(), tmp_path, only="report")
    assert rec.runs == ["report"]


def test_only_needs_the_stages_before_it_finished_and_unknown_stages_are_named(tmp_path: Path) -> None:
    rec = Recorder()
    with pytest.raises(UserError, match="--only train needs stage data finished first"):
        run_stages(rec.stages(), tmp_path, only="train")
    with pytest.raises(UserError, match="--from sft: no such stage; the stages are data, train, report"):
        run_stages(rec.stages(), tmp_path, from_stage="sft")
    assert rec.runs == []


def test_only_on_a_middle_stage_reruns_it_and_leaves_the_finished_run_usable(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(), tmp_path)
    rec.runs.clear()
    manifests = run_stages(rec.stages(), tmp_path, only="train")  # the later stage is not required, nor run
    assert rec.runs == ["train"] and "report" not in manifests
    rec.runs.clear()
    # train wrote the same file again: report, which read it, is still up to date and is not rerun.
    run_stages(rec.stages(), tmp_path)
    assert rec.runs == []
    run_stages(rec.stages(), tmp_path, only="report")
    assert rec.runs == ["report"]


def test_a_stage_output_rewritten_with_other_content_makes_the_stages_that_read_it_stale(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(), tmp_path)
    (tmp_path / "data" / "out.txt").write_text("edited by hand")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    from aloekit.pipeline import output_hash

    assert output_hash(manifest["outputs"]) != manifest["output_hash"]
    (tmp_path / "data" / "out.txt").write_text("data{}")  # the same bytes, a new modification time
    assert output_hash(manifest["outputs"]) == manifest["output_hash"]
