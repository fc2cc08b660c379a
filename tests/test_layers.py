"""The package's structure, held against its imports: each folder one concern, and no import
running from a lower layer to a higher one, and no import cycle between modules.

This is the picture docs/design.md draws; `pytest -q tests/test_layers.py` checks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "milter" / "faxmail"

#: Lowest first. A package may import its own modules and those of any lower layer; packages
#: on one layer do not import each other.
LAYERS: list[set[str]] = [
    {"core"},
    {"store"},
    {"render", "asterisk", "queue"},
    {"outbound"},
    {"notify"},
    {"daemon"},
    {"admin"},
    {"web"},  # the status page reads through admin's queries; `faxmail web` is an entry point
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["faxmail", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every faxmail module that `module` imports, at any depth of the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` names a module; `from mod import name` names the module.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("faxmail.") and name != module:
                yield name


GRAPH = {module: set(_imports(module, path)) for module, path in MODULES.items()}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(RANK), f"folders without a layer: {sorted(folders - set(RANK))}"
    loose = [m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in RANK]
    assert not loose, f"modules outside every folder: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up(module: str) -> None:
    here = _package(module)
    if here is None:
        return
    wrong = []
    for target in sorted(GRAPH[module]):
        there = _package(target)
        if there is None or there == here:
            continue
        if RANK[there] >= RANK[here]:
            wrong.append(f"{module} -> {target} ({here} may not import {there})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    """Module level and function level alike: a late import is still a loop."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
