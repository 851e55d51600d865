"""`aloe data build`: a mixture YAML becomes a decontaminated, deduplicated, split dataset with stats and a card."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from aloekit.config import parse_yaml
from aloekit.data.mixture import MixtureConfig, build
from aloekit.errors import UserError
from support import WORDS, aloe, assert_error_after_progress, assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPE = ROOT / "recipes" / "data" / "shared-mixture.yaml"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"public data folder {SHARED} not present")


def quiet(_: str) -> None:
    pass


# For tests about mixing rather than decontamination: an explicit opt-out (without it, a build that could check
# against no evaluation set at all is refused).
NO_EVAL = "decontamination: {benchmarks: [], safety: false}\n"


def config(text: str) -> MixtureConfig:
    return parse_yaml(text, MixtureConfig, source="test.yaml", what="mixture config")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def alpaca(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([{"instruction": q, "input": "", "output": a} for q, a in rows]))
    return path


def distinct_rows(prefix: str, n: int) -> list[tuple[str, str]]:
    """n question/answer pairs of random words (seeded by ``prefix``): no two are near-duplicates, within or
    across prefixes, so dedup keeps them all."""
    rng = random.Random(prefix)
    return [(f"{prefix} {' '.join(rng.choices(WORDS, k=12))}?", " ".join(rng.choices(WORDS, k=10))) for _ in range(n)]


# --- the real-data mixture ------------------------------------------------------------------------------------


@needs_shared
def test_the_shared_data_mixture_builds_offline_with_no_overlap_left_with_any_checked_evaluation_set(
    tmp_path: Path,
) -> None:
    out = tmp_path / "mix"
    cfg = config(RECIPE.read_text()).model_copy(update={"data_dir": SHARED})
    stats = build(cfg, out, log=quiet)

    assert {p.name for p in out.iterdir()} == {
        "train.jsonl",
        "validation.jsonl",
        "stats.json",
        "decontamination.json",
        "DATACARD.md",
        "config.yaml",
        "manifest.json",
    }
    report = json.loads((out / "decontamination.json").read_text())
    assert report["remaining_overlaps"] == 0
    for name in ("pubmedqa", "medexqa", "xstest", *(f"mmlu_{s}" for s in ("anatomy", "professional_medicine"))):
        assert report["benchmarks"][name]["status"] == "checked", name
    assert report["benchmarks"]["pubmedqa"]["items"] == 500  # the official test split only
    assert report["benchmarks"]["medmcqa"]["status"] == "excluded"  # it is a training source here, and says so
    assert "Not checked on purpose: medmcqa" in (out / "DATACARD.md").read_text()

    # Every source contributed, and every number in stats.json is what the files hold.
    assert set(stats["sources"]) == {"medmcqa", "pubmedqa", "medexqa", "chatdoctor", "medical_meadow", "medicationqa"}
    assert stats["sources"]["pubmedqa"]["read"] == 500
    train, validation = lines(out / "train.jsonl"), lines(out / "validation.jsonl")
    assert (len(train), len(validation)) == (stats["train"], stats["validation"])
    assert not {r["id"] for r in train} & {r["id"] for r in validation}
    assert stats["dropped"]["load:medicationqa"]["empty answer"]["count"] == 13  # counted, not silently lost
    assert stats["timings_s"]["total"] < 600

    mcq = [r for r in train if r["task"].startswith(("mcqa", "context_mcqa"))]
    assert mcq and all(
        r["messages"][-1]["content"].rsplit("\n", 1)[-1] in {"Answer: A", "Answer: B", "Answer: C", "Answer: D"}
        for r in mcq
    )
    assert stats["chain_of_thought"]["explanation"] > 1000  # MedMCQA explanations and PubMedQA long answers


@needs_shared
def test_the_dataset_loads_with_hugging_face_datasets_in_the_layout_trl_reads(tmp_path: Path) -> None:
    import datasets

    cfg = config(
        "sources: [{source: medexqa}, {source: medicationqa, limit: 40}]\ndecontamination: {exclude: [medmcqa]}"
    ).model_copy(update={"data_dir": SHARED})
    build(cfg, tmp_path / "d", log=quiet)
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "d" / "train.jsonl"), split="train")
    assert set(ds.column_names) >= {"messages"}
    assert ds[0]["messages"][-1]["role"] == "assistant"


@needs_shared
def test_a_medqa_test_file_given_by_path_is_checked_and_its_questions_never_reach_training(tmp_path: Path) -> None:
    question = (
        "A 45-year-old man presents with crushing substernal chest pain radiating to the left arm for two hours "
        "with diaphoresis. Which of the following is the most appropriate next step?"
    )
    test_file = tmp_path / "medqa_test.jsonl"
    options = {"A": "Aspirin", "B": "Discharge", "C": "Antacids", "D": "Reassurance"}
    row = {"question": question, "options": options, "answer": "Aspirin", "answer_idx": "A", "meta_info": "step1"}
    test_file.write_text(json.dumps(row) + "\n")
    train_file = tmp_path / "train.jsonl"
    train_rows = [
        {**row, "id": "copied"},
        {**row, "id": "fresh", "question": "Which vitamin deficiency causes scurvy?"},
    ]
    train_file.write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    cfg = config(
        f"sources: [{{format: medqa, path: '{train_file}', name: mine}}]\n"
        f"decontamination: {{extra: [{{name: medqa_test, path: '{test_file}', format: medqa}}]}}"
    )
    stats = build(cfg, tmp_path / "out", log=quiet)
    report = json.loads((tmp_path / "out" / "decontamination.json").read_text())
    assert report["benchmarks"]["medqa_test"] | {"status": "checked", "items": 1} == report["benchmarks"]["medqa_test"]
    assert [r["id"] for r in report["removed"]] == ["mine:copied"]
    assert report["remaining_overlaps"] == 0
    assert stats["sources"]["mine"]["contaminated"] == 1


@needs_shared
def test_xstest_and_benchmark_test_prompts_inside_a_user_file_are_removed_and_reported(tmp_path: Path) -> None:
    import csv

    with (SHARED / "xstest" / "xstest_prompts.csv").open(encoding="utf-8") as f:
        xstest = [row["prompt"] for row in csv.DictReader(f)][:20]
    with (SHARED / "mmlu_medical" / "test" / "anatomy_test.csv").open(encoding="utf-8") as f:
        mmlu = [row[0] for row in csv.reader(f) if len(row[0].split()) >= 13][:20]
    rows = [(p, "Here is a careful, helpful answer to that.") for p in xstest + mmlu]
    rows += distinct_rows("ordinary", 10)
    source = alpaca(tmp_path / "mine.json", rows)
    cfg = config(f"sources: [{{format: alpaca, path: '{source}', name: mine}}]")
    stats = build(cfg.model_copy(update={"data_dir": SHARED}), tmp_path / "o", log=quiet)
    assert stats["sources"]["mine"]["contaminated"] == 40
    assert stats["train"] + stats["validation"] == 10
    reasons = stats["dropped"]["decontaminate"]
    assert reasons["overlap with xstest"]["count"] == 20
    assert reasons["overlap with mmlu_anatomy"]["count"] == 20


@needs_shared
def test_a_source_that_is_an_evaluation_file_must_be_excluded_explicitly(tmp_path: Path) -> None:
    cfg = config("sources: [{source: medmcqa}]").model_copy(update={"data_dir": SHARED})
    with pytest.raises(UserError, match=r"decontamination\.exclude"):
        build(cfg, tmp_path / "o", log=quiet)
    assert not (tmp_path / "o").exists()


def test_a_build_that_could_check_against_no_evaluation_set_is_refused_unless_opted_out(tmp_path: Path) -> None:
    src = alpaca(tmp_path / "a.json", distinct_rows("q", 8))
    with pytest.raises(UserError, match="nothing would be checked"):
        build(config(f"sources: [{{format: alpaca, path: '{src}', name: a}}]"), tmp_path / "o", log=quiet)
    assert not (tmp_path / "o").exists()


def test_evaluation_only_sources_are_refused_as_training_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="evaluation"):
        build(config("sources: [{source: xstest}]"), tmp_path / "o", log=quiet)


# --- weights, caps, shares, split -----------------------------------------------------------------------------


def test_caps_weights_and_the_general_share_give_the_counts_asked_for_and_repeats_never_cross_the_split(
    tmp_path: Path,
) -> None:
    med = alpaca(tmp_path / "med.json", distinct_rows("medical", 60))
    gen = alpaca(tmp_path / "gen.json", distinct_rows("general", 200))
    small = alpaca(tmp_path / "small.json", distinct_rows("rare", 10))
    cfg = config(
        NO_EVAL
        + f"""
seed: 3
validation: 0.1
general_share: 0.25
sources:
  - {{format: alpaca, path: '{med}', name: med, cap: 40}}
  - {{format: alpaca, path: '{small}', name: small, weight: 2}}
  - {{format: alpaca, path: '{gen}', name: gen, general: true}}
"""
    )
    stats = build(cfg, tmp_path / "o", log=quiet)
    src = stats["sources"]
    assert src["med"]["train"] + src["med"]["validation"] == 40  # capped at 40 distinct items
    assert src["small"]["validation"] == 1 and src["small"]["train"] == 20 - 1  # 10 items, repeated twice
    medical = src["med"]["train"] + src["small"]["train"]
    assert src["gen"]["train"] == round(0.25 * medical / 0.75)
    assert stats["general_share"]["reached"] == pytest.approx(0.25, abs=0.01)

    train, validation = lines(tmp_path / "o" / "train.jsonl"), lines(tmp_path / "o" / "validation.jsonl")
    base = {r["id"].split("#repeat")[0] for r in train}
    assert not base & {r["id"] for r in validation}


def test_the_same_config_and_seed_build_the_same_dataset(tmp_path: Path) -> None:
    src = alpaca(tmp_path / "a.json", distinct_rows("q", 50))
    text = NO_EVAL + f"seed: 7\nsources: [{{format: alpaca, path: '{src}', name: a, weight: 0.5}}]"
    build(config(text), tmp_path / "one", log=quiet)
    build(config(text), tmp_path / "two", log=quiet)
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_near_duplicates_are_compared_on_content_not_on_the_template_around_it(tmp_path: Path) -> None:
    # The same MCQ twice under two ids gets two different templates; it must still be one item.
    rows = [
        {"id": f"q{i}", "question": question, "options": ["Alpha", "Beta", "Gamma", "Delta"], "answer": i % 4}
        for i, (question, _) in enumerate(distinct_rows("mcq", 12))
    ]
    rows.append({**rows[0], "id": "copy-of-q0", "question": rows[0]["question"] + " "})
    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = build(config(NO_EVAL + f"sources: [{{format: mcq, path: '{path}', name: m}}]"), tmp_path / "o", log=quiet)
    assert stats["sources"]["m"]["exact duplicates"] + stats["sources"]["m"]["near duplicates"] == 1


# --- bad input: one line, exit 2, nothing half-written ---------------------------------------------------------


def test_a_malformed_row_is_counted_by_reason_or_refused_in_strict_mode(tmp_path: Path) -> None:
    good = [{"instruction": q, "input": "", "output": a} for q, a in distinct_rows("x", 5)]
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in good[:2])
        + '{"instruction": "no output"}\n'
        + "".join(json.dumps(r) + "\n" for r in good[2:])
    )
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(NO_EVAL + f"sources: [{{format: alpaca, path: '{path}', name: rows}}]\n")

    lenient = aloe("data", "build", str(recipe), "--out", str(tmp_path / "ok"))
    assert lenient.returncode == 0, lenient.stderr
    stats = json.loads((tmp_path / "ok" / "stats.json").read_text())
    assert stats["dropped"]["load:rows"]["empty answer"]["count"] == 1
    assert stats["sources"]["rows"]["malformed"] == 1

    strict = aloe("data", "build", str(recipe), "--out", str(tmp_path / "strict"), "--strict")
    assert_error_after_progress(strict, f"{path}:3", "output")
    assert not (tmp_path / "strict").exists()


def test_a_typo_in_the_mixture_yaml_names_the_file_line_and_known_keys(tmp_path: Path) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("seed: 1\nsources:\n  - source: medexqa\n    wieght: 2\n")
    result = aloe("data", "build", str(recipe), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, str(recipe), "line 4", "wieght", "weight")
    assert not (tmp_path / "o").exists()


def test_an_unknown_source_lists_the_registered_ones(tmp_path: Path) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("sources: [{source: medmcqq}]\n")
    assert_one_line_error(aloe("data", "build", str(recipe), "--out", str(tmp_path / "o")), "medmcqq", "medmcqa")


def test_an_existing_dataset_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    src = alpaca(tmp_path / "a.json", distinct_rows("q", 8))
    cfg = config(NO_EVAL + f"sources: [{{format: alpaca, path: '{src}', name: a}}]")
    build(cfg, tmp_path / "o", log=quiet)
    with pytest.raises(UserError, match="--overwrite"):
        build(cfg, tmp_path / "o", log=quiet)
    build(cfg, tmp_path / "o", overwrite=True, log=quiet)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no temporary folder left behind


def test_data_stats_recomputes_the_counts_from_the_files(tmp_path: Path) -> None:
    src = alpaca(tmp_path / "a.json", distinct_rows("q", 30))
    build(
        config(NO_EVAL + f"validation: 0.2\nsources: [{{format: alpaca, path: '{src}', name: a}}]"),
        tmp_path / "o",
        log=quiet,
    )
    result = aloe("data", "stats", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["train"], shown["validation"]) == (24, 6)
    assert shown["kinds"]["train"] == {"task:open_qa": 24}
    assert "warning" not in shown


def test_the_config_as_run_is_saved_and_rebuilds_the_same_dataset(tmp_path: Path) -> None:
    src = alpaca(tmp_path / "a.json", distinct_rows("q", 20))
    build(
        config(NO_EVAL + f"seed: 5\nsources: [{{format: alpaca, path: '{src}', name: a}}]"), tmp_path / "o", log=quiet
    )
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert saved["seed"] == 5 and saved["dedup"]["threshold"] == 0.72 and saved["decontamination"]["ngram"] == 13
    assert saved["decontamination"]["benchmarks"] == [] and saved["decontamination"]["safety"] is False
    build(MixtureConfig.model_validate(saved), tmp_path / "again", log=quiet)
    assert (tmp_path / "o" / "train.jsonl").read_text() == (tmp_path / "again" / "train.jsonl").read_text()
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and "datasketch" in manifest["versions"]


def test_balanced_letters_deal_the_right_answer_evenly_and_keep_the_options_and_the_key() -> None:
    from collections import Counter

    from aloekit.data.mixture import balanced
    from aloekit.data.schema import MCQItem

    options = ("right", "w1", "w2", "w3")
    items = [MCQItem(id=f"q{i}", question="Q?", options=options, answer=0) for i in range(800)]
    moved = [balanced(item, seed=0) for item in items]
    assert all(m.options[m.answer] == "right" and sorted(m.options) == sorted(options) for m in moved)
    letters = Counter(m.answer for m in moved)
    assert set(letters) == {0, 1, 2, 3} and min(letters.values()) > 800 / 4 * 0.8, letters
    assert [balanced(item, seed=0) for item in items] == moved  # the same deal every time
    pubmed = MCQItem(id="p", question="Q?", options=("yes", "no", "maybe"), answer=1, context="c")
    assert balanced(pubmed, seed=0) is pubmed  # scored by word: its order is its meaning


def test_a_plain_share_teaches_that_share_of_mcqs_as_lm_eval_style_completions(tmp_path: Path) -> None:
    from aloekit.data.mixture import MCQFormat, to_chat
    from aloekit.data.schema import MCQItem
    from aloekit.data.tally import Tally

    config = MixtureConfig(
        sources=[{"format": "mcq", "path": tmp_path / "x.jsonl"}], mcq=MCQFormat(balance_letters=True, plain_share=0.3)
    )
    items = [MCQItem(id=f"q{i}", question=f"Q{i}?", options=("a", "b", "c", "d"), answer=0) for i in range(500)]
    samples = [to_chat(item, "x", config, {}, Tally())[0] for item in items]
    plain = [s for s in samples if s is not None and s.plain]
    assert 0.24 < len(plain) / len(samples) < 0.36
    assert {s.messages[1]["content"] for s in plain} == {" A", " B", " C", " D"}


def test_a_sources_own_plain_share_overrides_the_mixtures(tmp_path: Path) -> None:
    for name, stem in (("chat", "q"), ("plain", "r")):
        rows = [
            {"id": f"{stem}{i}", "question": f"{stem} {i}?", "options": ["a", "b", "c", "d"], "answer": 0}
            for i in range(40)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = (
        f"sources:\n  - {{format: mcq, path: {tmp_path / 'chat.jsonl'}, name: exam, plain_share: 0}}\n"
        f"  - {{format: mcq, path: {tmp_path / 'plain.jsonl'}, name: drill}}\n"
        f"validation: 0\nnear_dedup: false\nmcq: {{plain_share: 1}}\n{NO_EVAL}"
    )
    build(parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture"), tmp_path / "o", log=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "o" / "train.jsonl").read_text().splitlines()]
    plain = Counter(r["source"] for r in rows if r.get("plain"))
    assert plain == {"drill": 40}, plain


def test_parts_of_one_source_are_disjoint_cover_it_and_keep_their_items_whatever_the_limit(tmp_path: Path) -> None:
    from aloekit.data.mixture import SourceEntry, load_entry
    from aloekit.data.tally import Tally

    path = tmp_path / "mcq.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"Q{i}?", "options": ["a", "b"], "answer": 0}) + "\n"
            for i in range(200)
        )
    )

    def ids(**part: object) -> set[str]:
        entry = SourceEntry(format="mcq", path=path, **part)
        return {r.id for r in load_entry(entry, None, Tally())}

    sft, dpo = ids(part=(0, 0.8)), ids(part=(0.8, 1))
    assert not sft & dpo and len(sft | dpo) == 200 and 130 < len(sft) < 190
    assert ids(part=(0, 0.8), limit=100) <= sft
    with pytest.raises(ValueError, match="start < end"):
        SourceEntry(format="mcq", path=path, part=(0.5, 0.2))


def test_harmful_requests_become_refusals_in_their_attack_styles_and_survive_near_dedup(tmp_path: Path) -> None:
    # AdvBench ships no safe reply: with refusal_templates each request is taught with a templated refusal, in two
    # of three styles. The wrapper and the refusal are the same text for every request, which must not make
    # near-dedup drop the variants as copies of one another.
    from aloekit.data.prefs import SAFE_REFUSALS
    from aloekit.safety.styles import apply_style

    requests = [q for q, _ in distinct_rows("harm", 30)]
    path = tmp_path / "harm.jsonl"
    path.write_text("".join(json.dumps({"id": f"h{i}", "prompt": q}) + "\n" for i, q in enumerate(requests)))
    styles = "[plain, role_play, refusal_suppression]"
    text = NO_EVAL + f"validation: 0\nsources: [{{format: harmful, path: '{path}', name: h}}]\n"
    stats = build(
        config(text + f"safety: {{refusal_templates: true, styles: {styles}, styles_per_request: 2}}"),
        tmp_path / "o",
        log=quiet,
    )
    rows = lines(tmp_path / "o" / "train.jsonl")
    assert stats["sources"]["h"]["near duplicates"] == 0 and len(rows) == 60
    by_request: dict[str, set[str]] = {}
    for row in rows:
        request_id, style = row["id"].split(":")
        by_request.setdefault(request_id, set()).add(style)
        user, reply = row["messages"][-2]["content"], row["messages"][-1]["content"]
        assert user == apply_style(style, requests[int(request_id[1:])]) and reply in SAFE_REFUSALS
    assert all(len(s) == 2 for s in by_request.values()) and len(by_request) == 30
    assert {s for v in by_request.values() for s in v} == {"plain", "role_play", "refusal_suppression"}

    # Without templates, a request with no safe reply has nothing to teach: counted as unusable, not trained on;
    # with no other source the build keeps nothing, which is an error that says why (issue 20).
    with pytest.raises(UserError, match=r"no training rows: 30 rows dropped: 30 harmful request without a safe"):
        build(config(text), tmp_path / "o2", log=quiet)
    assert not (tmp_path / "o2").exists()


def test_an_unknown_attack_style_in_the_mixture_names_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown attack style 'pirate'.*role_play"):
        config(NO_EVAL + "sources: [{source: advbench}]\nsafety: {styles: [plain, pirate]}")


def test_rotations_teach_every_question_at_every_letter_and_keep_its_copies_on_one_side_of_the_split(
    tmp_path: Path,
) -> None:
    from collections import Counter, defaultdict

    rng = random.Random(3)
    rows = [
        {
            "question": f"q{i} {' '.join(rng.choices(WORDS, k=10))}?",
            "options": [" ".join(rng.choices(WORDS, k=3)) for _ in range(4)],
            "answer": rng.randrange(4),
        }
        for i in range(60)
    ]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(
        f"sources: [{{format: mcq, path: {tmp_path / 'q.jsonl'}, cap: 120}}]\nvalidation: 0.25\n"
        f"mcq: {{rotations: 4, plain_share: 0.5}}\n{NO_EVAL}"
    )
    build(cfg, tmp_path / "o", log=quiet)
    train, val = lines(tmp_path / "o" / "train.jsonl"), lines(tmp_path / "o" / "validation.jsonl")
    # The cap counts samples and keeps whole questions: 120 samples = 30 questions x 4 letters.
    assert len(train) + len(val) == 120
    copies: dict[str, list[dict]] = defaultdict(list)
    for split, samples in (("train", train), ("validation", val)):
        for s in samples:
            copies[s["id"].rsplit(":rot", 1)[0]].append({**s, "split": split})
    assert len(copies) == 30
    for group in copies.values():
        assert len(group) == 4 and len({s["split"] for s in group}) == 1  # never on both sides of the split
        assert len({s["task"] for s in group}) == 1  # one format per question, so each format stays balanced
        answers = Counter(s["messages"][-1]["content"].strip()[-1] for s in group)
        assert answers == Counter("ABCD"), answers  # the key at every letter exactly once


def test_benign_look_alikes_are_answered_by_the_responder_and_refusals_among_the_answers_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig
    from aloekit.data.sources.lookalike import lookalike_prompts
    from support import ScriptedEngine

    def reply(request: object) -> str:
        question = request.messages[-1]["content"]  # type: ignore[attr-defined]
        return "I'm sorry, but I can't help with that." if "Python" in question else f"Here is how: {question}"

    engine = ScriptedEngine(reply)
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: engine)
    cfg = config(f"sources: [{{source: lookalike}}]\nvalidation: 0\nresponder: {{model: x}}\n{NO_EVAL}")
    build(cfg, tmp_path / "o", log=quiet)
    train = lines(tmp_path / "o" / "train.jsonl")
    prompts = {p for _, _, p in lookalike_prompts()}
    assert train and all(s["messages"][-2]["content"] in prompts for s in train)
    assert all(s["messages"][-1]["content"].startswith("Here is how: ") for s in train)
    assert not any("Python" in s["messages"][-2]["content"] for s in train)  # its only answers were refusals
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["dropped"]["prefs"]["helpful response reads as a refusal"]["count"] >= 1, stats["dropped"]


def test_without_a_responder_look_alikes_without_answers_are_dropped_and_counted(tmp_path: Path) -> None:
    cfg = config(f"sources: [{{source: lookalike}}, {{format: alpaca, path: {tmp_path / 'a.json'}}}]\n{NO_EVAL}")
    alpaca(tmp_path / "a.json", distinct_rows("a", 20))
    build(cfg, tmp_path / "o", log=quiet)
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["sources"]["lookalike"].get("train", 0) == 0
    assert stats["dropped"]["format"]["benign prompt without an answer"]["count"] == 348


def test_a_reasoning_share_teaches_the_rest_of_the_explained_questions_answer_only_so_the_model_follows_the_ask(
    tmp_path: Path,
) -> None:
    from aloekit.data.mixture import ReasoningConfig, to_chat
    from aloekit.data.schema import MCQItem
    from aloekit.data.tally import Tally

    explanation = "The second option is right because the mechanism described matches it and no other option."
    items = [
        MCQItem(id=f"q{i}", question=f"Q{i}?", options=("a", "b", "c", "d"), answer=1, explanation=explanation)
        for i in range(400)
    ]
    source = [{"format": "mcq", "path": tmp_path / "x.jsonl"}]
    every = MixtureConfig(sources=source)
    half = MixtureConfig(sources=source, cot=ReasoningConfig(share=0.5))

    assert {to_chat(item, "x", every, {}, Tally())[1] for item in items} == {"explanation"}
    taught = [to_chat(item, "x", half, {}, Tally()) for item in items]
    answer_only = [s for s, origin in taught if s is not None and origin == "none"]
    assert 0.4 < len(answer_only) / len(items) < 0.6
    # Asked for the answer only (the answer-only templates), it replies with the answer and nothing else.
    assert {s.task for s in answer_only} == {"mcqa"} and {s.messages[-1]["content"] for s in answer_only} == {
        "Answer: B"
    }
    assert {s.task for s, origin in taught if origin == "explanation"} == {"mcqa_cot"}
