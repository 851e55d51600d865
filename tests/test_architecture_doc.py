"""docs/ARCHITECTURE.md and the code tell the same story: every module it names exists, and every package of
``src/aloekit`` has its place in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
PACKAGE = ROOT / "src" / "aloekit"
# Folders of data, not code: the demo corpus and the report's templates.
NOT_CODE = {"demo_data", "templates"}


def _code_paths() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}


def test_every_module_the_document_names_exists() -> None:
    named = set(re.findall(r"`([a-z_/]+\.py)`", DOC))
    code = _code_paths()
    tests = {p.name for p in (ROOT / "tests").glob("*.py")}
    missing = [n for n in sorted(named) if n.split("/")[-1] not in tests and not any(c.endswith(n) for c in code)]
    assert named and not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_every_package_has_its_place_in_the_document() -> None:
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert packages
    left_out = [p for p in packages if p not in NOT_CODE and f"{p}/" not in DOC]
    assert not left_out, f"packages missing from docs/ARCHITECTURE.md: {left_out}"
