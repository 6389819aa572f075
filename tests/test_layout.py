"""The architecture as the folders show it: data and models at the bottom, search spaces on
them, the scripts on top; no module imports one that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datamodules", "lightning_modules", "search_spaces", "scripts")
# A package may import those of a lower layer only (and itself).
LAYER = {"datamodules": 0, "lightning_modules": 0, "search_spaces": 1, "scripts": 2}
# Inside scripts/, the same rule, bottom up: its plain modules (train, leaderboard,
# experiment_folder, study, ...: the key None) at the bottom, then the reports on them, the
# sweep engine on the reports (its live status view), the benches on the sweep engine, and the
# command line (its parser and its commands) on top. Every folder of scripts/ is named here, so
# a new one gets a place.
SCRIPTS_LAYER = {None: 0, "cluster": 0, "reports": 1, "tune": 2, "bench": 3, "api": 4, "cli": 5,
                 "cli_commands": 5}
# No source file is longer than this: past it, a module holds more than one thing.
MAX_LINES = 450


def _module_name(path: Path) -> str:
    """The installed name: the repo root is the package ``hpsearch`` (see pyproject.toml)."""
    parts = ("hpsearch", *path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_of(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """Our modules that ``path`` imports anywhere in it (lazy imports included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_import_cycles():
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            # A package's __init__ importing its own modules is not a cycle back to it.
            if not all(m == cycle[0] and m.count(".") == 1 for m in cycle):
                pytest.fail("import cycle: " + " -> ".join(cycle))
            return
        if node in done:
            return
        for target in graph[node]:
            if not (target == node.rpartition(".")[0]):  # a module's own package __init__
                visit(target, [*path, node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_no_upward_imports():
    upward = sorted(f"{src} imports {dst}" for src, targets in _graph().items()
                    for dst in targets
                    if LAYER[_layer_of(dst)] > LAYER[_layer_of(src)]
                    or {_layer_of(src), _layer_of(dst)} == {"datamodules", "lightning_modules"})
    assert upward == []


def test_reports_and_the_data_and_model_layers_never_import_the_sweep_engine():
    graph = _graph()
    for src, targets in graph.items():
        if src.startswith(tuple(f"hpsearch.{p}" for p in (
                "scripts.reports", "datamodules", "lightning_modules", "search_spaces"))):
            assert not any(t.startswith("hpsearch.scripts.tune") for t in targets), src
    code = ("import sys, scripts.reports.retrain, scripts.reports.compare\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_our_modules_import_each_other_only_through_the_hpsearch_name():
    # Installed, the folders exist only as hpsearch.<folder>: a bare `import scripts...`
    # would work in the repo and fail (or import someone else's `scripts`) once installed.
    bare = sorted(f"{_module_name(p)} imports {m}" for pkg in PACKAGES
                  for p in (REPO / pkg).rglob("*.py") for m in _imports(p)
                  if m.split(".")[0] in PACKAGES)
    assert bare == []


def _scripts_unit(module: str) -> str | None:
    """The folder of scripts/ that ``module`` is in (or the module itself if it is named in
    SCRIPTS_LAYER, like scripts.cli); None for the other plain modules and scripts itself."""
    parts = module.split(".")
    if len(parts) < 3:
        return None
    return parts[2] if parts[2] in SCRIPTS_LAYER or (REPO / "scripts" / parts[2]).is_dir() \
        else None


def test_every_folder_of_scripts_has_a_layer():
    folders = {p.parent.name for p in (REPO / "scripts").glob("*/__init__.py")}
    assert sorted(folders - set(SCRIPTS_LAYER)) == []
    named = {unit for unit in SCRIPTS_LAYER if unit is not None}
    assert sorted(u for u in named if not (REPO / "scripts" / u).is_dir()
                  and not (REPO / "scripts" / f"{u}.py").is_file()) == []


def test_no_upward_imports_inside_scripts():
    upward = sorted(f"{src} imports {dst}" for src, targets in _graph().items()
                    if _layer_of(src) == "scripts"
                    for dst in targets if _layer_of(dst) == "scripts"
                    and SCRIPTS_LAYER[_scripts_unit(dst)] > SCRIPTS_LAYER[_scripts_unit(src)])
    assert upward == []


def test_no_source_file_is_too_long():
    too_long = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(REPO).as_posix()}: {lines} lines")
    assert too_long == []
