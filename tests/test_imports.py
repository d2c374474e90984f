"""Import hygiene: every module of llmrec imports, and llmrec's modules import each other without
cycles.

The module graph is read from the source with ``ast``: an edge A -> B for each ``import B`` /
``from B import x`` in A (``from P import m`` with ``P.m`` a module is an edge to ``P.m``). Two
graphs: the imports that run when a module is imported (module level, class bodies, ``try`` and
``if`` blocks; not function bodies, not ``if TYPE_CHECKING:``), which must be acyclic everywhere;
and every import, function bodies included (a function-level import that closes a cycle hides the
cycle rather than removing it), which must be acyclic outside ``SKIP_FUNCTION_LEVEL``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import llmrec

ROOT = Path(llmrec.__file__).resolve().parent
# packages whose function-level imports are not checked (none: every cycle is broken)
SKIP_FUNCTION_LEVEL: tuple[str, ...] = ()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if "resources" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module: those run at import time, or (``functions``) all."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and \
                not functions:
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _known(name: str) -> str | None:
    """The llmrec module ``name`` refers to (the longest importable prefix), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (t := _known(alias.name)) is not None:
                out.add(t)
        return out
    if node.level:  # relative: from the package of this module
        pkg = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{node.module}" if node.module else pkg
    else:
        base = node.module or ""
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            out.add(f"{base}.{alias.name}")
        elif (t := _known(base)) is not None:
            out.add(t)
    return out


def graph(functions: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in _import_nodes(tree, functions):
            targets |= _targets(name, node)
        targets.discard(name)
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (as a closed path), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)) is not None:
            return cycle
    return None


def _outside(name: str, skip: tuple[str, ...]) -> bool:
    return not any(name == s or name.startswith(s + ".") for s in skip)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_the_graph_reader_sees_imports():
    edges = graph(functions=False)
    assert "llmrec.data.config" in edges["llmrec.data.movielens"]
    assert "llmrec.data.movielens" in edges["llmrec.data.loaders"]
    # a function-level import is only in the second graph
    every = graph(functions=True)
    assert "llmrec.llm.tuning" in every["llmrec.finetune.ecpo.loop"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_import_time():
    cycle = find_cycle(graph(functions=False))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_counting_function_level_imports():
    edges = {m: {t for t in ts if _outside(t, SKIP_FUNCTION_LEVEL)}
             for m, ts in graph(functions=True).items() if _outside(m, SKIP_FUNCTION_LEVEL)}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle (function-level imports included): " + \
        " -> ".join(cycle or [])


def test_synth_does_not_import_finetune():
    bad = sorted(f"{m} -> {t}" for m, ts in graph(functions=True).items()
                 if m == "llmrec.synth" or m.startswith("llmrec.synth.")
                 for t in ts if t == "llmrec.finetune" or t.startswith("llmrec.finetune."))
    assert not bad, "llmrec.synth must not depend on llmrec.finetune: " + "; ".join(bad)
