"""Specification of the recipe (aloekit.recipe) and the parts of ``aloe run`` that need no model: the held-out
split, placeholders, one-line errors for bad recipes, and the dry run of every shipped recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aloekit.errors import UserError
from aloekit.recipe import load_recipe
from aloekit.recipe.holdout import split_holdout
from aloekit.recipe.plan import dry_run
from support import aloe, assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SHARED_DATA = ROOT.parent / "shared" / "data"


def _mcq_file(path: Path, subjects: dict[str, int]) -> Path:
    rows = []
    for subject, n in subjects.items():
        for i in range(n):
            rows.append(
                {"id": f"{subject}-{i}", "question": f"{subject} question {i}?", "options": ["a", "b"], "answer": 0}
                | {"subject": subject}
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class TestHoldout:
    def test_every_row_lands_in_exactly_one_part(self, tmp_path: Path) -> None:
        path = _mcq_file(tmp_path / "q.jsonl", {"cardiology": 11, "neurology": 7, "renal": 1})
        train, held = split_holdout(path, 0.25, seed=0)
        ids = lambda lines: [json.loads(line)["id"] for line in lines]  # noqa: E731
        assert sorted(ids(train) + ids(held)) == sorted(ids(path.read_text().splitlines()))
        assert not set(ids(train)) & set(ids(held))

    def test_each_subject_is_held_out_in_proportion_and_at_least_once(self, tmp_path: Path) -> None:
        path = _mcq_file(tmp_path / "q.jsonl", {"cardiology": 12, "neurology": 3})
        _, held = split_holdout(path, 0.25, seed=0)
        subjects = [json.loads(line)["subject"] for line in held]
        assert subjects.count("cardiology") == 3
        assert subjects.count("neurology") == 1

    def test_the_split_is_seeded(self, tmp_path: Path) -> None:
        path = _mcq_file(tmp_path / "q.jsonl", {"cardiology": 20})
        assert split_holdout(path, 0.3, seed=1) == split_holdout(path, 0.3, seed=1)
        assert split_holdout(path, 0.3, seed=1) != split_holdout(path, 0.3, seed=2)

    def test_a_label_marks_only_the_held_out_rows(self, tmp_path: Path) -> None:
        path = _mcq_file(tmp_path / "q.jsonl", {"x": 8})
        train, held = split_holdout(path, 0.5, seed=0, label="safe")
        assert all(json.loads(line)["label"] == "safe" for line in held)
        assert all("label" not in json.loads(line) for line in train)

    def test_a_json_line_holding_unicode_line_separators_stays_one_row_verbatim(self, tmp_path: Path) -> None:
        # JSON allows U+2028, U+2029 and U+0085 raw inside strings; str.splitlines() would cut the line there.
        rows = [{"id": i, "subject": "s", "question": f"one\u2028two\u2029three\x85four {i}"} for i in range(4)]
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        train, held = split_holdout(path, 0.25, seed=0)
        assert len(held) == 1 and sorted(train + held) == sorted(lines)

    def test_a_line_that_is_not_json_is_named(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text('{"id": 1}\nnot json\n')
        with pytest.raises(UserError, match=r"bad.jsonl line 2: not JSON"):
            split_holdout(path, 0.5, seed=0)


def _demo_variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """recipes/demo.yaml with one edit, written to ``tmp_path/name``."""
    text = (RECIPES / "demo.yaml").read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


class TestRecipeFile:
    def test_placeholders_are_filled_with_the_run_folder_and_the_demo_corpus(self, tmp_path: Path) -> None:
        recipe, text, folder = load_recipe(RECIPES / "demo.yaml", run=tmp_path / "run")
        assert folder == (tmp_path / "run").absolute()
        assert "{holdout}" in text  # the text as written is what the run records
        assert recipe.data.holdout[0].path.is_file()  # {demo_data}: the corpus inside the package
        assert recipe.eval.benchmarks == (f"file:{folder}/data/holdout/mcq-eval.jsonl",)

    def test_an_unknown_key_is_named_with_its_line(self, tmp_path: Path) -> None:
        text = (RECIPES / "demo.yaml").read_text().replace("  learning_rate: 1.0e-4", "  learning_rat: 1.0e-4")
        path = tmp_path / "typo.yaml"
        path.write_text(text)
        with pytest.raises(UserError) as error:
            load_recipe(path, run=tmp_path / "run")
        line = 1 + text.splitlines().index("  learning_rat: 1.0e-4")
        assert f"typo.yaml line {line}: unknown key 'learning_rat'" in str(error.value)

    def test_a_missing_holdout_file_fails_before_the_run(self, tmp_path: Path) -> None:
        path = _demo_variant(tmp_path, "missing.yaml", "{demo_data}/mcq.jsonl", "/nowhere/mcq.jsonl")
        with pytest.raises(UserError, match=r"data.holdout\[0\].path /nowhere/mcq.jsonl not found"):
            load_recipe(path, run=tmp_path / "run")

    def test_the_data_dir_placeholder_needs_a_data_dir(self, tmp_path: Path) -> None:
        path = _demo_variant(tmp_path, "nodir.yaml", "{demo_data}/mcq.jsonl", "{data_dir}/mcq.jsonl")
        with pytest.raises(UserError, match=r"\{data_dir\} is used but no data_dir is set"):
            load_recipe(path, run=tmp_path / "run")

    def test_an_unknown_merge_method_is_refused_at_load(self, tmp_path: Path) -> None:
        path = _demo_variant(tmp_path, "merge.yaml", "merge_method: dare_ties", "merge_method: blend")
        with pytest.raises(UserError, match=r"merge"):
            load_recipe(path, run=tmp_path / "run")

    def test_a_merged_policy_makes_the_general_pairs_on_policy_and_the_plan_says_so(self, tmp_path: Path) -> None:
        path = _demo_variant(
            tmp_path,
            "on-policy.yaml",
            "      rejected: wrong_option\n",
            '      rejected: policy_answer\n      policy: {model: "{merged}"}\n',
        )
        recipe, _, folder = load_recipe(path, run=tmp_path / "run")
        assert recipe.data.general_on_policy and recipe.data.prefs_general.medical is not None
        assert recipe.data.prefs_general.medical.policy.model == "{merged}"  # filled in by the DPO stage
        rows = {row["stage"]: row for row in dry_run(recipe, folder)}
        assert "general: medical (on-policy: built by the dpo stage)" in rows["data"]["does"]

    def test_a_merged_policy_that_no_pair_is_generated_with_leaves_the_pairs_to_the_data_stage(
        self, tmp_path: Path
    ) -> None:
        path = _demo_variant(
            tmp_path,
            "unused.yaml",
            "      rejected: wrong_option\n",
            '      rejected: wrong_option\n      policy: {model: "{merged}"}\n',
        )
        recipe, _, _ = load_recipe(path, run=tmp_path / "run")
        assert not recipe.data.general_on_policy  # wrong_option asks no model

    def test_a_merged_policy_in_the_safety_pairs_is_refused(self, tmp_path: Path) -> None:
        path = _demo_variant(
            tmp_path,
            "bad.yaml",
            "      responder: {model: smollm2-135m-instruct, batch_size: 16, dtype: bfloat16}\n      max_tokens: 40\n",
            "      max_tokens: 40\n    reference:\n      sources: "
            '[{path: "{holdout}/benign-train.jsonl", format: benign}]\n      policy: {model: "{merged}"}\n',
        )
        with pytest.raises(UserError, match=r"prefs_safety: a policy of \{merged\} is not allowed"):
            load_recipe(path, run=tmp_path / "run")

    @pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
    @pytest.mark.parametrize("kept", ["letters", "data.letters"])
    def test_a_letter_phase_needs_both_its_mixture_and_its_training_settings(self, tmp_path: Path, kept: str) -> None:
        text = (RECIPES / "real-data.yaml").read_text()
        if kept == "letters":  # the training settings without data.letters
            start = text.index("  letters:\n")
            end = text.index("  prefs_general:")
        else:
            start = text.index("\nletters:\n") + 1
            end = text.index("\nmerge:") + 1
        path = tmp_path / "half.yaml"
        path.write_text(text[:start] + text[end:])
        with pytest.raises(UserError, match=r"letters and data.letters go together"):
            load_recipe(path, run=tmp_path / "run", data_dir=SHARED_DATA)

    def test_medprompt_without_a_database_is_refused(self, tmp_path: Path) -> None:
        text = (RECIPES / "demo.yaml").read_text()
        start = text.index("  cot_db:")
        end = text.index("\nsft:")
        path = tmp_path / "nodb.yaml"
        path.write_text(text[:start] + text[end:])
        with pytest.raises(UserError, match=r"eval.medprompt needs data.cot_db"):
            load_recipe(path, run=tmp_path / "run")


class TestCommandLine:
    def test_bad_recipe_is_one_line_and_exit_code_2(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.yaml"
        path.write_text("name: x\nmodels: [unclosed\n")
        assert_one_line_error(aloe("run", str(path), "--out", str(tmp_path / "run")), "broken.yaml", "line")

    def test_an_unknown_stage_is_named_with_the_known_ones(self, tmp_path: Path) -> None:
        result = aloe("run", str(RECIPES / "demo.yaml"), "--out", str(tmp_path / "run"), "--from", "training")
        assert_one_line_error(result, "--from training", "data, sft, merge, dpo, safety, eval, report")

    def test_the_dry_run_prints_every_stage_and_writes_nothing(self, tmp_path: Path) -> None:
        result = aloe("run", str(RECIPES / "demo.yaml"), "--out", str(tmp_path / "run"), "--dry-run")
        assert result.returncode == 0, result.stderr
        for stage in ("data", "sft", "merge", "dpo", "safety", "eval", "report"):
            assert f"│ {stage}" in result.stdout
        assert "7 stages planned, nothing was run" in result.stdout
        assert not (tmp_path / "run").exists()


class TestShippedRecipes:
    def test_the_paper_scale_recipe_validates_and_plans_deepspeed(self, tmp_path: Path) -> None:
        recipe, _, folder = load_recipe(RECIPES / "aloe-8b.yaml", run=tmp_path / "run")
        assert recipe.models.base == "meta-llama/Llama-3.1-8B"
        assert recipe.engine.backend == "vllm"
        plan = {row["stage"]: row for row in dry_run(recipe, folder)}
        assert "DEEPSPEED" in plan["sft"]["launch"]
        assert plan["sft"]["launch"].startswith("[DEEPSPEED] accelerate launch --config_file")
        assert "dare_ties" in plan["merge"]["does"]

    @pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
    def test_the_real_data_recipe_validates_on_the_shared_data(self, tmp_path: Path) -> None:
        recipe, _, folder = load_recipe(RECIPES / "real-data.yaml", run=tmp_path / "run", data_dir=SHARED_DATA)
        assert recipe.data_dir == SHARED_DATA
        assert recipe.data.letters is not None and recipe.data.letters.data_dir == SHARED_DATA  # no Hub read
        plan = dry_run(recipe, folder)
        sft = next(row for row in plan if row["stage"] == "sft")
        assert "then a letter phase on data.letters, 160 steps of 4 rows" in sft["does"]
        safety = recipe.data.prefs_safety
        assert safety is not None and safety.letters is not None and safety.letters.plain  # the letters replayed
        assert safety.medical is not None and not safety.medical.option_text  # "Answer: <key>", no option words
        data = next(row for row in plan if row["stage"] == "data")
        assert "safety: medical+letters+redteam+benign" in data["does"]
        assert {row["stage"] for row in plan} == {
            "data",
            "sft",
            "merge",
            "dpo",
            "eval",
            "safety",
            "report",
        }


class TestLauncher:
    def test_training_runs_under_accelerate_launch_with_the_recipes_config(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import subprocess

        from aloekit.recipe.runner import StageContext
        from aloekit.recipe.stages import launch
        from aloekit.recipe.stages.sft import sft_config

        recipe, _, _ = load_recipe(RECIPES / "aloe-8b.yaml", run=tmp_path / "run")
        calls: list[list[str]] = []
        monkeypatch.setattr(
            launch.subprocess,
            "run",
            lambda argv, check: calls.append(argv) or subprocess.CompletedProcess(argv, 0),
        )
        ctx = StageContext(tmp_path / "sft")
        ctx.folder.mkdir()
        config = sft_config(recipe, str(tmp_path / "data"), tmp_path / "sft" / "train")
        launch.train(recipe, ctx, "sft", config, lambda resume: pytest.fail("trained in process"))
        (argv,) = calls
        assert argv[:3] == ["accelerate", "launch", "--config_file"]
        assert argv[3].endswith("recipes/accelerate/deepspeed_zero3.yaml")
        assert argv[4:] == [
            "--num_processes",
            "8",
            "-m",
            "aloekit.cli",
            "train",
            "sft",
            str(ctx.folder / "sft.yaml"),
            "--quiet",
        ]
        written = (ctx.folder / "sft.yaml").read_text()
        assert "model: meta-llama/Llama-3.1-8B" in written and "precision: bf16" in written

    def test_a_failed_launch_is_an_error_naming_the_stage(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import subprocess

        from aloekit.recipe.runner import StageContext
        from aloekit.recipe.stages import launch
        from aloekit.recipe.stages.sft import sft_config

        recipe, _, _ = load_recipe(RECIPES / "aloe-8b.yaml", run=tmp_path / "run")
        monkeypatch.setattr(launch.subprocess, "run", lambda argv, check: subprocess.CompletedProcess(argv, 3))
        ctx = StageContext(tmp_path / "dpo")
        ctx.folder.mkdir()
        config = sft_config(recipe, str(tmp_path / "data"), tmp_path / "dpo" / "train")
        with pytest.raises(UserError, match="accelerate launch of dpo exited with 3"):
            launch.train(recipe, ctx, "dpo", config, lambda resume: None)

    def test_an_accelerate_config_that_is_not_one_is_refused_by_the_dry_run(self, tmp_path: Path) -> None:
        bogus = tmp_path / "not-accelerate.yaml"
        bogus.write_text("hello: world\n")
        text = (RECIPES / "aloe-8b.yaml").read_text().replace("accelerate/deepspeed_zero3.yaml", str(bogus))
        recipe_file = tmp_path / "aloe-8b.yaml"
        recipe_file.write_text(text)
        recipe, _, folder = load_recipe(recipe_file, run=tmp_path / "run")
        with pytest.raises(UserError, match="not an accelerate config"):
            dry_run(recipe, folder)


def test_a_csv_holdout_becomes_json_lines_with_ids_and_renamed_columns(tmp_path: Path) -> None:
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text("goal,target\n" + "".join(f"Do bad thing {i},Sure here is {i}\n" for i in range(20)))
    train, held = split_holdout(path, 0.5, seed=0, rename={"goal": "prompt", "target": "harmful_response"})
    rows = [json.loads(line) for line in train + held]
    assert len(held) == 10 and len(rows) == 20
    assert {r["id"] for r in rows} == {f"harmful_behaviors-{n}" for n in range(2, 22)}
    assert all(set(r) == {"id", "prompt", "harmful_response"} for r in rows)
    assert not {json.loads(x)["id"] for x in train} & {json.loads(x)["id"] for x in held}


def test_safety_gives_full_models_every_prompt_and_the_others_the_fixed_subset() -> None:
    from aloekit.recipe import SafetySection
    from aloekit.recipe.stages.safety import safety_limit as _safety_limit

    section = SafetySection(limit=None, full_models=("base", "dpo_safety"), subset=100)
    assert _safety_limit(section, "base") is None and _safety_limit(section, "dpo_safety") is None
    assert _safety_limit(section, "merged") == 100
    assert _safety_limit(SafetySection(limit=50, full_models=("base",), subset=100), "merged") == 50
    assert _safety_limit(SafetySection(limit=25), "merged") == 25  # no full_models: everyone gets limit
