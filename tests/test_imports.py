"""The core's modules form layers: each imports only what sits below it, at the top of the file.

Imports inside functions used to hide a cycle (artifact → models → distillation → training → report → artifact);
this test reads every module's imports with `ast` (nothing is executed) and checks there is no cycle and no
import of a compressor module inside a function.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "compressor"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(imported compressor module, inside a function?) for every import in the tree."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("compressor"):
                found.append((child.module, inside))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names if alias.name.startswith("compressor"))
            visit(child, inside)

    visit(tree, False)
    return found


GRAPH = {_module_name(path): _imports(ast.parse(path.read_text())) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_compressor_module_is_imported_inside_a_function():
    inside = {module: [name for name, in_function in imports if in_function] for module, imports in GRAPH.items()}
    assert {module: names for module, names in inside.items() if names} == {}


def test_the_core_has_no_import_cycle():
    edges = {module: {name for name, _ in imports if name in GRAPH and name != "compressor"}
             for module, imports in GRAPH.items() if module != "compressor"}  # the package __init__ only re-exports
    state: dict[str, str] = {}

    def walk(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " → ".join(path[path.index(target):] + [target]))
            if target not in state:
                walk(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
