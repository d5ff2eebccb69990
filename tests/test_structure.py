"""The package's shape: no import cycles, no arrows back up, no I/O in the pipeline.

Read from the source with ``ast``, so lazy imports inside functions count as edges
too (they are cycles that merely happen later); imports under ``TYPE_CHECKING`` do
not (they never run).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"
PACKAGE = SRC / "mailtriage"

# pipeline/ takes bytes and values and returns values: it imports none of these.
PIPELINE_MUST_NOT_IMPORT = (
    "sqlalchemy",
    "mailtriage.store",
    "mailtriage.outbound",
    "mailtriage.cli",
    "mailtriage.app",
    "mailtriage.worker",
    "mailtriage.runners",
    "mailtriage.service",
    "mailtriage.inbox",
    "mailtriage.blobs",
    "mailtriage.intake",
    "subprocess",
    "pytesseract",
    "socket",
)
# Calls that read or write files.
IO_CALLS = {"open", "read_bytes", "read_text", "write_bytes", "write_text", "stat"}
# I/O in pipeline/ that is allowed: none (the rules loader is triage/rules_file.py, the
# .eml helper triage/eml.py, and parse takes bytes).
KNOWN_PIPELINE_IO: set[tuple[str, str]] = set()


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imported(path: Path, known: dict[str, Path], src: Path = SRC) -> set[str]:
    """Modules ``path`` imports (absolute names; submodules resolved)."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imported(path, known) if m in known and m != name}
        for name, path in known.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_lazy_imports_are_edges_and_type_checking_ones_are_not(tmp_path: Path) -> None:
    known = {"mailtriage.a": Path(), "mailtriage.b": Path(), "mailtriage.c": Path()}
    source = tmp_path / "mailtriage" / "a.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mailtriage.c import C\n"
        "def f():\n    from mailtriage import b\n",
        encoding="utf-8",
    )
    assert imported(source, known, tmp_path) & set(known) == {"mailtriage.b"}


def test_no_import_cycle_in_mailtriage() -> None:
    edges = graph()
    assert len(edges) > 40  # the walk found the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("path", sorted((PACKAGE / "pipeline").rglob("*.py")), ids=lambda p: p.name)
def test_pipeline_imports_no_edge_module(path: Path) -> None:
    bad = sorted(
        m
        for m in imported(path, modules())
        if any(m == f or m.startswith(f + ".") for f in PIPELINE_MUST_NOT_IMPORT)
    )
    assert bad == [], f"{path.name} imports {bad}"


# Arrows point down only: the store writes and looks up, outbound plans and sends;
# neither reaches up into what runs or wires them.
NO_ARROWS_UP = {
    "mailtriage.store": ("mailtriage.outbound", "mailtriage.runners", "mailtriage.worker"),
    "mailtriage.outbound": ("mailtriage.runners", "mailtriage.worker"),
}
EDGE_OF_THE_APP = ("mailtriage.cli", "mailtriage.app", "mailtriage.service")


@pytest.mark.parametrize("package", ["mailtriage.store", "mailtriage.outbound"])
def test_no_arrows_back_up(package: str) -> None:
    forbidden = (*NO_ARROWS_UP[package], *EDGE_OF_THE_APP)
    bad = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name == package or name.startswith(package + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )
    assert bad == []


def _io_calls(path: Path, package: Path = PACKAGE) -> set[tuple[str, str, str]]:
    """(file, enclosing function, call) for each file-I/O call in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(package).as_posix()
    found: set[tuple[str, str, str]] = set()

    def walk(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef) else function
            if isinstance(child, ast.Call):
                func = child.func
                if isinstance(func, ast.Name) and func.id == "open":
                    found.add((rel, function, "open"))
                elif isinstance(func, ast.Attribute) and func.attr in IO_CALLS:
                    owner = ast.unparse(func.value)
                    # Image.open(io.BytesIO(...)) reads bytes in memory, not a file
                    if not (func.attr == "open" and "BytesIO" in ast.unparse(child)):
                        found.add((rel, function, f"{owner}.{func.attr}"))
            walk(child, inner)

    walk(tree, "<module>")
    return found


def test_pipeline_opens_no_files() -> None:
    calls = set().union(*(_io_calls(p) for p in sorted((PACKAGE / "pipeline").rglob("*.py"))))
    unexpected = sorted(c for c in calls if c[:2] not in KNOWN_PIPELINE_IO)
    assert unexpected == [], f"file I/O in pipeline/: {unexpected}"


def test_the_io_check_sees_a_file_read(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "def load(p):\n    return p.read_bytes() + open(p).read()\n"
        "def image(data):\n    return Image.open(io.BytesIO(data))\n",
        encoding="utf-8",
    )
    calls = _io_calls(source, tmp_path)
    assert calls == {("x.py", "load", "p.read_bytes"), ("x.py", "load", "open")}


# sla/ is arithmetic like pipeline/: no database, no mail, no files (issue 12).
@pytest.mark.parametrize("path", sorted((PACKAGE / "sla").rglob("*.py")), ids=lambda p: p.name)
def test_sla_is_pure(path: Path) -> None:
    bad = sorted(
        m
        for m in imported(path, modules())
        if any(m == f or m.startswith(f + ".") for f in PIPELINE_MUST_NOT_IMPORT)
    )
    assert bad == [], f"{path.name} imports {bad}"
    assert _io_calls(path) == set()
