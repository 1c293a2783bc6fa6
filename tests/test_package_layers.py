"""The packages of pixeljury import one another one way (no cycle), the contract in core imports no
other pixeljury package, only the CLI draws on a console, and no library module makes a console
at import time. Read from the source (every import statement, also those inside functions)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pixeljury"


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem  # a top-level module is its own package


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        source = _package_of(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "pixeljury" and len(parts) > 1 and parts[1] != source:
                    graph[source].add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_cycle_between_packages() -> None:
    graph = _graph()
    assert graph["cli"] and graph["runs"]  # the walk found imports at all
    assert _cycle(graph) is None, f"packages import one another in a cycle: {' -> '.join(_cycle(graph) or [])}"


def test_core_imports_no_other_pixeljury_package_and_nothing_imports_the_cli() -> None:
    graph = _graph()
    assert graph.get("core", set()) == set()
    assert [p for p, deps in graph.items() if "cli" in deps and p not in ("cli", "__main__")] == []


def test_no_console_is_made_at_import_time_and_only_the_cli_uses_rich_consoles() -> None:
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = getattr(func, "id", None) or getattr(func, "attr", None)
                assert name != "Console", f"{path.relative_to(SRC)}:{node.lineno} makes a console at import time"
        if _package_of(path) != "cli":
            assert "rich.console" not in path.read_text(encoding="utf-8"), \
                f"{path.relative_to(SRC)} draws on a console; the library emits events (pixeljury.runs.events)"
