"""The project's modules import one another without cycles, counting imports made inside
functions (a lazy import only hides a cycle) and leaving out ``if TYPE_CHECKING:`` blocks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "rooms", "recordings")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for pkg in PACKAGES
        if (ROOT / pkg).is_dir()
        for p in (ROOT / pkg).rglob("*.py")
    }
    modules = set(files)
    graph = {}
    for name, path in files.items():
        graph[name] = _imports(ast.parse(path.read_text(encoding="utf-8")), modules) - {name}
        graph[name] -= {m for m in graph[name] if name.startswith(m + ".")}  # own package
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(graph.get(name, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)) is not None:
            return cycle
    return None


def test_graph_sees_lazy_imports() -> None:
    tree = ast.parse("def f():\n    from server.http.pages import render_error\n")
    assert _imports(tree, {"server.http.pages"}) == {"server.http.pages"}


def test_project_modules_import_without_cycles() -> None:
    graph = import_graph()
    assert "server.errors" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
