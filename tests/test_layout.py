"""The house rules, checked: no import cycles, short modules, the harness keeps out of the daemon.

The import graph is read from the AST of every module in ``core/`` and ``sim/``: every
``import``/``from … import`` counts, at any depth (inside functions and under ``TYPE_CHECKING``
too), because a cycle that only exists for the type checker still ties two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "sim")
MAX_LINES = 600
MAX_FLAT_SIM_MODULES = 4


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from core import protocol`` imports the module core.protocol, not core itself
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            # the deepest project module the import names (``from sim.x import f`` -> sim.x)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_type_checking_and_relative_imports() -> None:
    graph = import_graph()
    assert "core.framing" in graph["core.daemon"] or "core.connection" in graph["core.daemon"]
    assert "core.errors" in graph["core.ipynb"]


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_short(name: str) -> None:
    lines = _modules()[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name}: {lines} lines (> {MAX_LINES}); split it by idea"


def test_sim_top_level_shows_the_architecture() -> None:
    flat = sorted(p.name for p in (REPO / "sim").glob("*.py") if p.name != "__init__.py")
    assert len(flat) <= MAX_FLAT_SIM_MODULES, flat


def test_the_harness_never_reaches_into_the_room_registry() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("sim", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        if "rooms.rooms()[" in path.read_text()
    ]
    assert offenders == []


def test_core_exposes_its_public_api() -> None:
    import core

    for name in (
        "Daemon",
        "DaemonConfig",
        "NotebookClient",
        "NotebookDoc",
        "parse_notebook",
        "export_notebook",
        "CoreError",
        "DiskBlobStore",
        "__version__",
    ):
        assert name in core.__all__, name
    assert set(core._EXPORTS) | {"__version__"} == set(core.__all__)
    missing = [name for name in core.__all__ if not hasattr(core, name)]
    assert missing == []
    errors = [getattr(core, n) for n in core.__all__ if n.endswith(("Error", "Refused", "Failed"))]
    assert all(issubclass(e, core.CoreError) for e in errors)
