"""The installed package holds the product: nothing under vae_lab/ imports the measurements of vae_lab itself
(benchmarks/), their browser drivers or the tests; conf/ holds only the configs of vae_lab's own entry points; and
`make install` leaves Selenium and Panel to the targets that need them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import CONF, ROOT

PACKAGE = ROOT / "vae_lab"
MEASUREMENT = {"benchmarks", "tests", "selenium", "panel"}  # what only benchmarks/ and the tests may import


def imported(tree: ast.AST) -> set[str]:
    """The top-level names of the modules a file imports (relative imports stay in the package)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def entry_configs(tree: ast.AST) -> set[str]:
    """The config name of every entry point in a file: `@entry_point("NAME")` (vae_lab.cli's `hydra.main`)."""
    return {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and ast.unparse(node.func) == "entry_point" and node.args and isinstance(node.args[0], ast.Constant)}


def trees() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_imports_no_measurement_code():
    found = [f"{path.relative_to(ROOT)} imports {name}" for path, tree in trees().items()
             for name in sorted(imported(tree) & MEASUREMENT)]
    assert not found, found
    assert imported(ast.parse("import panel.widgets\nfrom benchmarks.bench import x\nfrom . import y")) == {
        "panel", "benchmarks"}  # the check sees both forms


def test_conf_holds_only_the_configs_of_vae_labs_entry_points():
    entries = set().union(*map(entry_configs, trees().values()))
    assert entries >= {"train", "evaluate", "generate", "report", "explore"}
    assert {path.stem for path in CONF.glob("*.yaml")} == entries  # a benchmark's config is in benchmarks/conf


def test_make_install_installs_only_what_the_readme_tour_uses():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*?(?=^\S)", makefile, re.MULTILINE | re.DOTALL).group(0)
    assert re.findall(r"-e '\.\[([^\]]*)\]'", recipe) == ["dev,cluster,datasets,explore"]
    assert "-e '.[browser,panel]'" in makefile  # what make test-browser and make bench-explore add
    project = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python ≥ 3.11)
    assert re.search(r"^\[tool\.setuptools\.packages\.find\]\ninclude = \[\"vae_lab\*\"\]$", project, re.MULTILINE)
