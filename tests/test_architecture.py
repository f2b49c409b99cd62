"""The dependency rules of architecture.md, checked on the source: they stay true only if tested."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "training", "feature_store", "serving", "pelanggan")

# package -> top-level modules it must never import
FORBIDDEN = {
    "recsys": {"training", "feature_store", "serving", "pelanggan", "redis", "fastapi", "implicit"},
    "training": {"serving", "feature_store", "pelanggan", "fastapi"},
    "feature_store": {"training", "serving", "pelanggan", "fastapi", "implicit"},
    "serving": {"training", "pelanggan", "implicit"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_top_levels(path) & FORBIDDEN[package])
    ]
    assert violations == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom serving.app import create_app\n")
    assert "serving" in imported_top_levels(module)


def test_no_test_reads_the_data_beside_the_checkout() -> None:
    """A clone has no ``../shared``: tests use ``tests/data`` (only its maker reads the file)."""
    maker = ROOT / "tests" / "data" / "make_sample.py"
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != maker and path != Path(__file__).resolve()
        if any(marker in path.read_text() for marker in ('"shared"', "shared/data", "../shared"))
    ]
    assert readers == []
    assert (ROOT / "tests" / "data" / "online_retail_sample.csv.gz").is_file()
