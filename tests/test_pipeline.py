"""Specification of the stage runner behind ``aloe run`` (aloekit.recipe.runner): finished stages are skipped,
killed or changed ones rerun, changes flow downstream, and typed outputs travel through the manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aloekit.errors import UserError
from aloekit.recipe.runner import Stage, StageContext, StageOutputs, output_hash, run_stages


class FileOutput(StageOutputs):
    file: Path


class Recorder:
    """Three fake stages (data -> train -> report) that write files and count their runs; one can be made to
    die mid-way, as a killed process would."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.die_in: str | None = None

    def stage(self, name: str, reads: tuple[str, ...] = (), **config: Any) -> Stage:
        def run(ctx: StageContext) -> FileOutput:
            self.runs.append(name)
            (ctx.folder / "partial.txt").write_text("started")
            if self.die_in == name:
                raise KeyboardInterrupt(f"killed during {name}")
            parts = [ctx.outputs(r, FileOutput).file.read_text() for r in reads]
            out = ctx.folder / "out.txt"
            out.write_text("+".join([*parts, f"{name}{dict(config)}"]))
            return FileOutput(file=out)

        return Stage(name, run, FileOutput, config, reads)

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
    assert output_hash(manifest["outputs"]) != manifest["output_hash"]
    (tmp_path / "data" / "out.txt").write_text("data{}")  # the same bytes, a new modification time
    assert output_hash(manifest["outputs"]) == manifest["output_hash"]


def test_a_model_folder_hash_covers_the_weights_and_not_its_dated_card_or_record(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "README.md").write_text("date: 2026-12-03 10:00 UTC")
    (folder / "aloe_merge.json").write_text('{"created": "10:00"}')
    outputs = {"model": str(folder)}
    first = output_hash(outputs)
    (folder / "README.md").write_text("date: 2026-12-03 11:00 UTC")  # a rerun of a deterministic merge
    (folder / "aloe_merge.json").write_text('{"created": "11:00"}')
    assert output_hash(outputs) == first
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert output_hash(outputs) != first
    card = tmp_path / "README.md"  # a file named as an output is hashed whatever its name
    card.write_text("one card")
    before = output_hash({"card": str(card)})
    card.write_text("another card")
    assert output_hash({"card": str(card)}) != before


def test_a_later_stage_gets_the_earlier_ones_outputs_typed_also_when_they_were_skipped(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(), tmp_path)
    seen: list[object] = []

    def report(ctx: StageContext) -> FileOutput:
        seen.append(ctx.outputs("train", FileOutput))
        return FileOutput(file=ctx.outputs("train", FileOutput).file)

    stages = [*rec.stages()[:2], Stage("report", report, FileOutput, {"v": 2}, ("train",))]
    run_stages(stages, tmp_path)
    assert seen == [FileOutput(file=tmp_path / "train" / "out.txt")]  # read back from train's manifest


def test_a_manifest_whose_outputs_do_not_read_as_the_stage_type_reruns_that_stage(tmp_path: Path) -> None:
    rec = Recorder()
    run_stages(rec.stages(), tmp_path)
    path = tmp_path / "train" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "outputs": {"model": "elsewhere"}}))
    rec.runs.clear()
    run_stages(rec.stages(), tmp_path)
    assert rec.runs == ["train"]  # rewrote the same file: report stays up to date


def test_a_stage_that_returns_another_type_is_a_bug_named_by_the_runner(tmp_path: Path) -> None:
    stage = Stage("data", lambda ctx: {"file": "x"}, FileOutput)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="stage data returned dict, not FileOutput"):
        run_stages([stage], tmp_path)
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["status"] == "running"
