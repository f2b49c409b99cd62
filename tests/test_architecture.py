"""The dependency rules of architecture.md, checked on the source: they stay true only if tested.

* Layers: ``serving -> feature_store -> recsys``, ``training -> recsys``, ``pelanggan`` (the
  command line, the composition root) on top; ``recsys`` imports no I/O framework.
* No import cycle between any two source modules, counting imports inside functions (a lazy
  import that dodges a cycle at run time is still a cycle in the design).
* ``recsys/`` keeps a small shared kernel at its top; everything else lives in a room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "training", "feature_store", "serving", "pelanggan")

#: package -> the project packages it may import (besides itself)
ALLOWED = {
    "recsys": set(),
    "training": {"recsys"},
    "feature_store": {"recsys"},
    "serving": {"feature_store", "recsys"},
    "pelanggan": {"recsys", "training", "feature_store", "serving"},
}
#: package -> third-party top-level modules it must never import
FORBIDDEN_LIBRARIES = {
    "recsys": {"redis", "fastapi", "implicit", "onnxruntime"},
    "training": {"fastapi", "redis"},
    "feature_store": {"fastapi", "implicit"},
    "serving": {"implicit"},
}
#: The shared kernel: the only modules at the top of ``recsys/``.
KERNEL = {"__init__", "bundle", "config", "errors", "events", "schema", "store"}
MAX_MODULE_LINES = 450
#: What a test reading the data beside the checkout would spell (built, so this file does not).
OUTSIDE_MARKERS = tuple(m.replace("SH", "shared") for m in ('"SH"', "SH/data", "../SH"))


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules ``path`` imports, anywhere in it (functions included); ``from pkg import x``
    counts ``pkg.x`` when that is a module of ``known``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in known
            )
    return names


def source_files(root: Path = ROOT) -> list[Path]:
    return sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package import counts as its ``__init__``)."""
    files = {module_name(path, root): path for path in source_files(root)}
    known = set(files)
    return {
        name: {m for m in imported_modules(path, known) if m in known and m != name}
        for name, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    graph = import_graph()
    violations = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module.split(".")[0] == package
        for target in sorted(targets)
        if target.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert violations == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN_LIBRARIES))
def test_package_imports_no_forbidden_library(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(
            {m.split(".")[0] for m in imported_modules(path, set())} & FORBIDDEN_LIBRARIES[package]
        )
    ]
    assert violations == []


def test_no_import_cycle_between_source_modules() -> None:
    assert cycles(import_graph()) == []


def test_recsys_top_level_holds_only_the_shared_kernel() -> None:
    top = {path.stem for path in (ROOT / "recsys").glob("*.py")}
    assert top == KERNEL


def test_no_source_module_is_over_the_size_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in source_files()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_the_checker_sees_a_cycle_and_a_layer_violation(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "recsys" / "a.py").write_text("from recsys import b\n")
    (tmp_path / "recsys" / "b.py").write_text("def f():\n    from recsys.a import g\n")
    (tmp_path / "feature_store" / "c.py").write_text("import serving.app\nfrom serving import x\n")
    (tmp_path / "serving" / "app.py").write_text("")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["recsys.a", "recsys.b"]]
    assert graph["feature_store.c"] == {"serving.app", "serving"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_test_reads_the_data_beside_the_checkout() -> None:
    """A clone has no shared folder beside it: tests use ``tests/data`` (its maker,
    ``benchmarks/make_test_sample.py``, reads the full file)."""
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != Path(__file__).resolve()
        if any(marker in path.read_text() for marker in OUTSIDE_MARKERS)
    ]
    assert readers == []
    assert (ROOT / "tests" / "data" / "online_retail_sample.csv.gz").is_file()
