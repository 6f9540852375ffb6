"""No module of dioconf imports, directly or through others, a module that imports it
back, at the top or inside a function (a lazy import hides a cycle; it does not break
it). Imports under ``if TYPE_CHECKING:`` (annotations only) do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import dioconf

ROOT = Path(dioconf.__file__).resolve().parent  # the source tree (dioconf/ maps onto it)
PACKAGES = ("model", "traces", "conformance", "impl", "bench", "examples")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts)


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT.parent / pkg).rglob("*.py")]
    files += list(ROOT.glob("*.py"))
    names = {_module(p): p for p in files if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name.rsplit(".", 1)[0]
        deps = set()
        tree = ast.parse(path.read_text())
        typing_only = {  # `if TYPE_CHECKING:` imports exist for annotations only
            id(n) for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
            for n in ast.walk(block)
        }  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
                deps |= {c for c in cands if c in names}
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_graph_sees_lazy_imports():
    graph = _graph()
    assert "impl.kernel.convert_around" in graph["impl.kernel.convert"]
    assert "traces.replay" in graph["conformance.quality"]


def test_no_import_cycles():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])
