"""The shape of the package: every module imports, no import cycle, no module over 700 lines and
no function over 80 lines.

The import graph has one node per module of ``neurotut`` (a package's ``__init__`` is the node of
the package). Its edges come from the AST of each module: every ``import`` and ``from ... import``
statement, relative ones resolved, **including those inside functions** (a lazy import is still a
dependency: the old ``train`` <-> ``inference`` circle ran through one) and those under ``if``.
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
``import a.b.c`` is an edge to ``a.b.c`` only (Python also runs the ``__init__`` of ``a`` and
``a.b`` first, but a package ``__init__`` that imports its own submodules would otherwise make
every submodule import a cycle). ``neurotut.__main__`` is in the graph but not imported: importing
it runs the command line.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import neurotut

MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """``{dotted name: source file}`` of neurotut and every module below it."""
    found = {"neurotut": Path(neurotut.__file__)}
    for info in pkgutil.walk_packages(neurotut.__path__, prefix="neurotut."):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The neurotut modules that module ``name`` imports (see the module docstring)."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, ast.parse(path.read_text(), str(path))) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_walk_finds_the_package_and_its_subpackages():
    assert {"neurotut.cli", "neurotut.geometry", "neurotut.ffn.inference", "neurotut.models.rsunet",
            "neurotut.data.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"neurotut.__main__"}))  # that one runs the CLI
def test_every_module_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_and_relative_imports():
    tree = ast.parse("from . import storage\nfrom .model import logit\n"
                     "def f():\n    from neurotut import config\n    import neurotut.io\n")
    assert _imports("neurotut.ffn.request", tree) == {
        "neurotut.ffn.storage", "neurotut.ffn.model", "neurotut.config", "neurotut.io"}


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_700_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} (line {node.lineno}): {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
