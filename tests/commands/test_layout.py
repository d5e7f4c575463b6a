"""The house rules of the layout (docs/development.md): thin commands on top that no library module
imports, unique module names, no import cycle, and dependencies that point one way."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gssm_jax"
COMMANDS = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
MAX_COMMAND_LINES = 110  # a parser, a call, the error mapping: about 80 lines


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """gssm_jax modules `path` imports (anywhere in it), resolved to modules where a name is one."""
    known = MODULES
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("gssm_jax"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gssm_jax"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return out


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def test_the_top_level_holds_only_the_commands():
    assert COMMANDS == [
        "bench",
        "difficulty",
        "evaluate",
        "generate",
        "kron",
        "main",
        "probe",
        "report",
        "write_data",
    ]
    for name in COMMANDS:
        lines = len((PACKAGE / f"{name}.py").read_text().splitlines())
        assert lines <= MAX_COMMAND_LINES, (name, lines)


def test_no_library_module_imports_a_command():
    commands = {f"gssm_jax.{c}" for c in COMMANDS}
    for name, path in MODULES.items():
        if name in commands:
            continue
        assert not (_imports(path) & commands), (name, _imports(path) & commands)


def test_module_names_are_unique():
    stems = defaultdict(list)
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "launch").glob("*.py")]:
        if path.stem != "__init__":
            stems[path.stem].append(str(path.relative_to(ROOT)))
    assert {s: p for s, p in stems.items() if len(p) > 1} == {}


def test_the_import_graph_has_no_cycle():
    graph = {
        name: {m for m in _imports(path) if m in MODULES} - {name} for name, path in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*stack[stack.index(nxt) :], nxt])}")
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (
            "gssm_jax.gssm",
            ("gssm_jax.models", "gssm_jax.config", "gssm_jax.train", "gssm_jax.data"),
        ),
        ("gssm_jax.models", ("gssm_jax.config", "gssm_jax.train", "gssm_jax.data")),
        ("gssm_jax.data", ("gssm_jax.models", "gssm_jax.train", "gssm_jax.inference")),
    ],
)
def test_dependencies_point_one_way(package, forbidden):
    for name, path in MODULES.items():
        if name.startswith(package + "."):
            bad = [m for m in _imports(path) if m.startswith(forbidden)]
            assert not bad, (name, bad)
