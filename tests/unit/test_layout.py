"""The harness's modules import each other without cycles (function-local imports included), and the
replica package imports nothing from the harness."""

from __future__ import annotations

import ast
from pathlib import Path

from labs.settings import ROOT

LABS = ROOT / "labs"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every labs module `path` imports, at any depth of its code."""
    name = module_name(path)
    return imports_in(path.read_text(), name if path.name == "__init__.py" else name.rsplit(".", 1)[0])


def imports_in(source: str, package: str) -> set[str]:
    """Every labs module `source`, a module of `package`, imports, at any depth of its code."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "labs"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "labs":
                continue
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in LABS.rglob("*.py") if "app" not in p.relative_to(LABS).parts[:1]}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in imports(path) if t in modules and t != name}
        # importing a package's module runs the package's __init__ first: that is an edge too, but a
        # module importing its own package's __init__ is how Python works, not a cycle worth reporting
        edges[name] = {t for t in targets if not name.startswith(f"{t}.")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_harness_has_no_import_cycle():
    edges = graph()
    assert "labs.runner" in edges and "labs.protocols.socketio" in edges
    assert find_cycle(edges) is None


def test_the_replica_package_imports_nothing_from_the_harness():
    for path in (LABS / "app").rglob("*.py"):
        assert not {i for i in imports(path) if not i.startswith("labs.app")}, path


def test_nothing_outside_the_benches_imports_them_and_they_do_not_import_the_cli():
    edges = graph()
    benches = {m for m in edges if m == "labs.bench" or m.startswith("labs.bench.")}
    assert {"labs.bench.common", "labs.bench.capacity", "labs.bench.connections.run"} <= benches
    outside = {m: sorted(t for t in targets if t in benches) for m, targets in edges.items() if m not in benches}
    assert {m: t for m, t in outside.items() if t} == {}
    inside = {m: sorted(t for t in edges[m] if t == "labs.cli" or t == "labs.__main__") for m in benches}
    assert {m: t for m, t in inside.items() if t} == {}



def test_an_import_of_the_cli_inside_a_function_is_an_import():
    source = "def main():\n    from ..cli import progress_printer\n    import labs.bench.capacity\n"
    assert {"labs.cli", "labs.cli.progress_printer", "labs.bench.capacity"} <= imports_in(source, "labs.bench")
