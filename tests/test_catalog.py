"""The dataset catalog: each dataset declared once, roles that say what may be trained on, the one guard, and the
modules that read it (sources, benchmarks, suites, decontamination) agreeing with it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from aloekit import catalog
from aloekit.catalog import DATASETS, HubRef, guard
from aloekit.data import decontaminate
from aloekit.data.sources import SOURCES
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks, redteam

SRC = Path(__file__).resolve().parents[1] / "src" / "aloekit"


def test_every_file_and_every_use_is_declared_once() -> None:
    files = Counter(f for use in catalog.splits() for f in use.split.files)
    # PubMedQA's labeled file is the one file in two splits: the training pool and (with the test PMIDs) the test.
    assert {f for f, n in files.items() if n > 1} == {catalog.medical.PUBMEDQA_LABELED}
    names = [b.name for b, _ in catalog.benchmarks()]
    assert len(names) == len(set(names)) == len(benchmarks.REGISTRY)
    suites = [s.name for s, _ in catalog.suites()]
    assert len(suites) == len(set(suites)) == len(redteam.SUITES)


def test_roles_keep_evaluated_splits_out_of_training() -> None:
    for bench, use in catalog.benchmarks():
        assert use.split.role == "eval", bench.name
    for _, use in catalog.checked_texts():
        assert use.split.role == "eval", use.dataset.name
    for suite, use in catalog.suites():
        assert use.split.role in ("eval", "both"), suite.name
    for dataset in DATASETS.values():
        local = dataset.training_split("local")
        if local is not None and local.role == "eval":
            # The one declared exception: MedMCQA's only local copy is its validation split, and says so.
            assert dataset.name == "medmcqa" and "validation" in dataset.description.lower()
        hub = dataset.training_split("hub")
        assert hub is None or hub.role in ("train", "both"), dataset.name


def test_the_modules_that_read_datasets_take_their_facts_from_the_catalog() -> None:
    pubmedqa = benchmarks.REGISTRY["pubmedqa"]
    assert pubmedqa.files == DATASETS["pubmedqa"].split("test").files and len(pubmedqa.files) == 2
    assert SOURCES["pubmedqa"].local == DATASETS["pubmedqa"].split("pool").files[0]
    assert redteam.SUITES["harmbench"].files == DATASETS["harmbench"].split("test").files
    assert {name for name, _, _ in decontaminate.safety_sets()} == {
        "xstest",
        "harmbench",
        "medsafetybench",
        "truthfulqa",
        "bbq",
    }


def test_decontamination_checks_what_is_evaluated() -> None:
    sets = {name: split for name, _, split in decontaminate.safety_sets()}
    # TruthfulQA: the multiple-choice file that evaluation scores; HarmBench: the split red-teaming runs.
    assert sets["truthfulqa"].files == (catalog.TRUTHFULQA_MC,)
    assert sets["harmbench"].files == redteam.SUITES["harmbench"].files
    assert sets["medsafetybench"].files == redteam.SUITES["medsafetybench"].files


def test_no_module_outside_the_catalog_names_a_dataset_file() -> None:
    # Distinctive names only: "train.jsonl" is also what the data stage writes.
    files = {Path(f) for use in catalog.splits() for f in use.split.files}
    names = {f.name for f in files if "*" not in f.name and f.stem not in ("train", "test", "dev")}
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "catalog":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(path.name, n) for n in names if n in node.value]
    assert found == []


def test_the_guard_refuses_evaluation_data_by_name_file_and_hub(tmp_path: Path) -> None:
    for name in ("xstest", "harmbench", "medsafetybench_test", "truthfulqa", "bbq", "mmlu_anatomy"):
        with pytest.raises(UserError, match=f"{name} is an evaluation set"):
            guard.refuse_name(name)
    guard.refuse_name("medmcqa")  # a training source too
    for use in catalog.splits():
        for relative in use.split.files:
            path = tmp_path / relative.replace("*", "x")
            if use.split.role == "eval":
                with pytest.raises(UserError, match="evaluation set"):
                    guard.refuse_file(path)
            elif relative != catalog.medical.PUBMEDQA_LABELED:
                guard.refuse_file(path)
    with pytest.raises(UserError, match="the pubmedqa benchmark"):
        guard.refuse_hub(HubRef("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "train+test"))
    guard.refuse_hub(HubRef("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "train+validation"))
    with pytest.raises(UserError, match=r"walledai/HarmBench is an evaluation set \(harmbench\)"):
        guard.refuse_hub(HubRef("walledai/HarmBench", None, "anything"))


def test_the_guard_refuses_a_source_reading_a_checked_evaluation_file(tmp_path: Path) -> None:
    dev = tmp_path / "medmcqa" / "dev.jsonl"
    coverage = {"medmcqa": {"status": "checked", "path": str(dev)}}
    with pytest.raises(UserError, match=r"add 'medmcqa' to decontamination\.exclude"):
        guard.refuse_checked([("m", "medmcqa", None)], tmp_path, coverage)
    # PubMedQA's source reads the pool apart from the test PMIDs that decontamination checks.
    labeled = tmp_path / catalog.medical.PUBMEDQA_LABELED
    guard.refuse_checked([("p", "pubmedqa", None)], tmp_path, {"pubmedqa": {"status": "checked", "path": str(labeled)}})


def test_the_catalog_imports_first_and_alone() -> None:
    # No cycle: the declarations import nothing else from aloekit, and every reader imports in any order.
    code = (
        "import sys, aloekit.catalog.guard; "
        "assert not [m for m in sys.modules if m.startswith('aloekit.') and "
        "m.split('.')[1] not in ('catalog', 'errors')], sorted(sys.modules); "
        "import aloekit.data.decontaminate, aloekit.evaluation.redteam"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
