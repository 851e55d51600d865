"""Specification of the report package's shape (issue 19, item 3): numbers gathered into a typed document apart
from rendering, Jinja2 templates shipped with the package, one writer of every model card, small modules with no
import of the CLI, and errors caught by name."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from aloekit.report import sections as report_sections
from aloekit.report.card import dpo_card, merge_card, sft_card, write_card
from aloekit.report.document import Chart, Heading, Note, Report, Section, Table
from aloekit.report.html import html_page, render_html
from aloekit.report.markdown import markdown_page, render_markdown
from aloekit.report.sections import build
from aloekit.report.tables import source_table

PACKAGE = Path(report_sections.__file__).parent
ROOT = PACKAGE.parents[2]
SUMMARY: dict[str, Any] = {
    "title": "aloekit run: t",
    "created": "2026-12-01T00:00:00Z",
    "models": {"base": "some-org/some-model", "final": "/runs/t/model"},
    "stages": [{"name": "data", "status": "finished", "seconds": 3.0}],
}


def test_the_report_is_gathered_into_a_typed_document_that_both_templates_render() -> None:
    report = build(SUMMARY)
    assert isinstance(report, Report) and report.meta == ("created 2026-12-01T00:00:00Z", "final model /runs/t/model")
    assert all(isinstance(s, Section) and s.blocks for s in report.sections)
    overview = next(s for s in report.sections if s.id == "overview")
    stages = next(b for b in overview.blocks if isinstance(b, Table) and b.caption == "Stages")
    assert stages.rows == (("data", "finished", "3.0 s"),)  # numbers are text once gathered: templates compute none
    assert html_page(report) == render_html(SUMMARY) and markdown_page(report) == render_markdown(SUMMARY)


def page_of(*blocks: Any) -> tuple[str, str]:
    report = Report("t", (), (Section("s", "S", tuple(blocks)),))
    return html_page(report), markdown_page(report)


def test_a_chart_that_cannot_be_drawn_says_why_in_its_place() -> None:
    def broken() -> bytes:
        raise ValueError("no training stage logged a loss")

    page, text = page_of(Heading("h"), Chart("Loss.", broken))
    assert '<p class="note">Loss. The chart could not be drawn: ValueError: no training stage logged a loss</p>' in page
    assert 'data-charts-total="0"' in page and "*Chart in report.html: Loss.*" in text


def test_a_malformed_section_is_a_note_but_a_bug_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def malformed(summary: Any) -> list[Any]:
        raise KeyError("acc")

    def bug(summary: Any) -> list[Any]:
        raise RuntimeError("a bug, not a data problem")

    monkeypatch.setattr(report_sections, "SECTIONS", (("a", "A", malformed),))
    assert build(SUMMARY).sections[0].blocks == (Note("This section could not be rendered: KeyError: 'acc'"),)
    monkeypatch.setattr(report_sections, "SECTIONS", (("a", "A", bug),))
    with pytest.raises(RuntimeError, match="a bug"):
        build(SUMMARY)


def test_an_unknown_block_fails_both_renderers() -> None:
    with pytest.raises(TypeError, match="unknown block"):
        page_of(object())
    report = Report("t", (), (Section("s", "S", (object(),)),))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown block"):
        markdown_page(report)


def test_the_data_table_orders_stages_in_pipeline_order() -> None:
    # The report's table and `aloe data stats` both order columns by data.dataset.stage_columns.
    sources = {"a": {"train": 1, "own count": 2, "read": 3}, "b": {"contaminated": 1}}
    table = source_table(sources)
    assert table.header == ("source", "read", "contaminated", "train", "own count")


def test_every_template_ships_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["aloekit"]
    for path in (PACKAGE / "templates").iterdir():
        name = f"report/templates/{path.name}"
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_report_modules_are_small_and_import_no_cli_and_catch_no_exception_wholesale() -> None:
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 500, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("aloekit.cli"), (path.name, node.module)
            if isinstance(node, ast.ExceptHandler):
                assert not (isinstance(node.type, ast.Name) and node.type.id in ("Exception", "BaseException"))
                assert node.type is not None, path.name


def front_matter(card: str) -> dict[str, Any]:
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    assert isinstance(meta, dict)
    return meta


def test_the_sft_card_names_its_base_datasets_and_settings() -> None:
    card = sft_card(
        title="run (aloekit SFT)",
        base_model="org/base",
        datasets=["org/data"],
        config={"lora": {"r": 8}, "learning_rate": 2e-05, "note": "a|b"},
        results={"eval_loss": 1.234567, "steps": 10},
        lora=True,
        description="Supervised fine-tuning on 5 conversations.",
    )
    assert front_matter(card) == {
        "base_model": "org/base",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "aloekit", "trl", "sft", "lora"],
        "datasets": ["org/data"],
    }
    assert "| eval_loss | 1.235 |\n| steps | 10 |\n\n## Training configuration" in card
    assert "| lora.r | 8 |\n| learning_rate | 2e-05 |\n| note | a\\|b |" in card
    assert "LoRA adapters, merged into the weights" in card and card.endswith("before any use.\n")


def test_the_dpo_card_says_which_model_each_stage_started_from() -> None:
    common: dict[str, Any] = {"base_model": "org/base", "stages": 2, "lora": False, "settings": {"beta": 0.1}}
    first = dpo_card(stage="a", number=1, start_model="org/base", start_stage=None, results={}, **common)
    second = dpo_card(stage="b", number=2, start_model=None, start_stage="a", results={"loss": 0.53127}, **common)
    assert "Stage 1 of 2 of aloekit's DPO alignment (the Aloe recipe): trained from `org/base`, which" in first
    assert "trained from the model of stage `a`, which was also its frozen reference." in second
    assert "| metric | value |\n|---|---|\n\n\n## Limitations" in first  # no metric logged: an empty table
    assert "| loss | 0.5313 |" in second and "dpo" in front_matter(second)["tags"]


def test_the_merge_card_lists_every_model_and_the_base(tmp_path: Path) -> None:
    card = merge_card(
        name="merged",
        version="0.1.0",
        method="ties",
        base="org/base",
        models=[("org/a", {"weight": 0.5}), ("org/b", {})],
        parameters={},
        out_dtype="bfloat16",
        seed=None,
        date="2026-12-01 00:00 UTC",
        config_yaml="merge_method: ties\n",
    )
    assert front_matter(card)["base_model"] == ["org/base", "org/a", "org/b"]
    assert '- `org/a`: `{"weight": 0.5}`\n- `org/b`\n- `org/base` (base model)\n\n## Details' in card
    assert "seed:" not in card and card.endswith("```yaml\nmerge_method: ties\n```\n")
    path = write_card(tmp_path, card)
    assert path == tmp_path / "README.md" and path.read_text() == card
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # written atomically: no temporary file left
