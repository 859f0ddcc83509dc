"""The package's walls (occupancy/__init__.py), held by reading every module's imports."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "occupancy"
SHARED = {"occupancy", "occupancy.errors", "occupancy.config", "occupancy.paths", "occupancy.sample"}

# part -> the parts it may import besides the shared modules (None: anything)
ALLOWED = {
    "cli": None,
    "ui": {"engine", "reporting"},
    "lab": {"models", "engine"},
    "engine": {"models"},  # and only from engine/loading.py, checked below
    "models": set(),
    "reporting": {"engine"},  # and only the store's schema, checked below
    "fleet": {"engine", "reporting"},  # sync reads the store; the fleet report is built by reporting's summaries
    "sample": set(),
    "shared": set(),
}


def part_of(module: str) -> str:
    """'occupancy.engine.store' -> 'engine'; the top-level shared modules -> 'shared'."""
    if module in SHARED or module.startswith("occupancy.sample"):
        return "sample" if module.startswith("occupancy.sample") else "shared"
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every occupancy module `path` imports, at the top or inside functions, resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("occupancy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("occupancy"):
                found.add(target)
    return found


def all_imports() -> list[tuple[str, str]]:
    return [(module_name(path), target) for path in sorted(PACKAGE.rglob("*.py")) for target in imports_of(path)]


def wall_violations(pairs: list[tuple[str, str]]) -> list[str]:
    """The (importer, imported) pairs that break a wall, as readable lines."""
    broken = []
    for source, target in pairs:
        mine, theirs = part_of(source), part_of(target)
        allowed = ALLOWED[mine]
        if mine == theirs or theirs in ("shared", "sample") or allowed is None:
            continue
        if theirs not in allowed:
            broken.append(f"{source} imports {target}")
        elif mine == "engine" and theirs == "models" and source != "occupancy.engine.loading":
            broken.append(f"{source} imports {target} (the engine reaches the models only through loading.py)")
        elif mine == "reporting" and target != "occupancy.engine.store":
            broken.append(f"{source} imports {target} (reporting reads the store's schema and nothing else)")
    return broken


def import_cycles(pairs: list[tuple[str, str]]) -> list[str]:
    """Modules that import themselves through others (imports inside functions count: a cycle is one
    design whichever import runs first), each cycle once, as 'a -> b -> a' from its first module by name."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in pairs:
        if source != target:
            graph[source].add(target)
    cycles: dict[frozenset[str], str] = {}
    for start in sorted(graph):
        path_to = {start: [start]}  # the shortest import path from `start` to each module reached
        queue = [start]
        while queue:
            module = queue.pop(0)
            for target in sorted(graph[module]):
                if target == start:
                    members = path_to[module]
                    cycles.setdefault(frozenset(members), " -> ".join([*members, start]))
                elif target not in path_to:
                    path_to[target] = [*path_to[module], target]
                    queue.append(target)
    return sorted(cycles.values())


def test_no_module_imports_itself_through_others():
    assert not import_cycles(all_imports()), "\n".join(import_cycles(all_imports()))


def test_the_checker_sees_import_cycles():
    pairs = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("d", "e"), ("e", "d"), ("f", "a"), ("g", "g")]
    assert import_cycles(pairs) == ["a -> b -> c -> a", "d -> e -> d"]


def test_every_part_imports_only_what_its_wall_allows():
    assert not wall_violations(all_imports()), "\n".join(wall_violations(all_imports()))


def test_nothing_imports_cli_or_lab_from_outside():
    broken = [f"{s} imports {t}" for s, t in all_imports()
              if part_of(t) in ("cli", "lab") and part_of(s) not in ("cli", part_of(t))]
    assert not broken, "\n".join(broken)


def test_the_checker_sees_broken_walls():
    pairs = [
        ("occupancy.engine.capture", "occupancy.ui.dashboard"),
        ("occupancy.engine.worker", "occupancy.models.counter"),
        ("occupancy.reporting.summary", "occupancy.engine.pipeline"),
        ("occupancy.models.counter", "occupancy.lab.train"),
        ("occupancy.engine.loading", "occupancy.models.counter"),  # allowed
        ("occupancy.cli.lab", "occupancy.lab.train"),  # allowed
    ]
    assert len(wall_violations(pairs)) == 4


def test_imports_are_read_from_relative_forms_too():
    names = imports_of(PACKAGE / "engine" / "loading.py")
    assert {"occupancy.config", "occupancy.models", "occupancy.errors"} <= names
