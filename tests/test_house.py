"""The house's rules, checked on the code itself: data flows one way between rooms, files stay readable.

- no file imports one that imports it back (directly or through others; imports inside functions count too);
- ``rag/`` (answering) never imports ``ingest/`` (writing): what both use lives in ``index/``;
- ``index/`` imports none of the rooms above it;
- no runtime module over 500 lines;
- benchmarks and documentation tools live in ``tools/``, which is not installed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collectivia", "index", "ingest", "rag", "chat_ui", "evals")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path], name: str) -> set[str]:
    """The project's modules a file imports, anywhere in it (``from a import b`` counts ``a.b`` when it is a module)."""
    targets: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_package else name.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules, name) for name, path in modules.items()}
    # Importing ``a.b`` runs ``a/__init__.py``; a package's own __init__ re-exporting its modules is not a cycle.
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, counter, found = {}, {}, [], set(), [0], []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def test_no_file_imports_one_that_imports_it_back():
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_answering_does_not_import_ingestion_and_the_index_imports_no_room_above_it():
    graph = _graph()
    upward = {
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if (name.startswith("rag") and target.startswith("ingest"))
        or (name.startswith("index") and target.split(".")[0] in {"ingest", "rag", "chat_ui", "evals", "collectivia"})
        or (name.split(".")[0] in {"index", "ingest", "rag"} and target.split(".")[0] in {"chat_ui", "evals"})
    }
    assert upward == set()


def test_no_runtime_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_tools_are_not_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(pattern.startswith("tools") for pattern in included)
    assert list((ROOT / "tools").glob("bench_*.py")), "the benchmarks live in tools/"
    for package in PACKAGES:
        assert not list((ROOT / package).rglob("bench_*.py")), f"a benchmark is left in {package}/"
