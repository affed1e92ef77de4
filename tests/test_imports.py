"""The import graph of vae_lab/, read from the source with `ast`: no circles (a package's `__init__` included), and
training, evaluation, the API and the explorer never import what they must not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vae_lab"
REPORTING = ("vae_lab.report", "vae_lab.timing_pass")
MEASUREMENT = ("vae_lab.bench", "vae_lab.probe", "vae_lab.explorer.bench", "vae_lab.explorer.libraries")
TRAINING = ("vae_lab.train",)
# What each kind of code never imports, directly or through anything it imports.
FORBIDDEN = {("vae_lab.train", "vae_lab.evaluate", "vae_lab.api"): REPORTING + MEASUREMENT,
             ("vae_lab.explore", "vae_lab.explorer"): TRAINING + MEASUREMENT}


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its `__init__.py`)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of import nodes under `if TYPE_CHECKING:`, which never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that importing `name` runs directly: every import statement, at module level or in a
    function, resolved to the module it names (`from pkg import sub` to pkg.sub when sub is a module), with the
    packages above it whose `__init__` runs first (those above `name` itself have run already)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parent = node.module or ""
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                parent = ".".join(anchor + ([node.module] if node.module else []))
            targets |= {f"{parent}.{a.name}" if f"{parent}.{a.name}" in known else parent for a in node.names}
    edges = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        parts = target.split(".") if target else []
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step != name and not (name + ".").startswith(step + "."):
                edges.add(step)
    return edges


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    known = modules(root)
    return {name: imported(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each sorted: every import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reached(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module importing `start` runs, itself included."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += edges.get(name, ())
    return seen


def test_the_package_has_no_import_circle():
    assert circles(graph()) == []


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("sources", list(FORBIDDEN), ids=lambda s: s[0])
def test_forbidden_imports(sources):
    edges = graph()
    starts = [m for m in edges if _under(m, sources) and not _under(m, FORBIDDEN[sources])]
    assert starts
    bad = {(start, m) for start in starts for m in reached(edges, start)
           if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[sources])}
    assert not bad, sorted(bad)


def test_the_graph_sees_circles_and_imports_of_every_kind(tmp_path):
    """A package whose `__init__` imports a submodule that imports the package back, a function-level import and a
    `from pkg import submodule`: each edge found, the circles named, TYPE_CHECKING imports left out."""
    pkg = tmp_path / "vae_lab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from vae_lab.sub.b import x\n")
    (pkg / "sub" / "b.py").write_text("from vae_lab.sub import c\nx = 1\n")
    (pkg / "sub" / "c.py").write_text("def f():\n    from vae_lab import d\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vae_lab.e\n"
                              "from . import e\n")
    (pkg / "e.py").write_text("from vae_lab.sub.b import x\n")
    edges = graph(pkg)
    assert edges["vae_lab.sub.b"] == {"vae_lab.sub.c"} and edges["vae_lab.sub.c"] == {"vae_lab.d"}
    assert edges["vae_lab.d"] == {"vae_lab.e"} and edges["vae_lab.e"] == {"vae_lab.sub", "vae_lab.sub.b"}
    assert circles(edges) == [["vae_lab.d", "vae_lab.e", "vae_lab.sub", "vae_lab.sub.b", "vae_lab.sub.c"]]
    assert "vae_lab.d" in reached(edges, "vae_lab.sub")
