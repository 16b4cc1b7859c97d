"""The harness's packages sit in layers and every import points down: a package imports only packages of a lower
layer (and its own modules). docs/architecture.md states the same order."""

from __future__ import annotations

from tests.unit.test_layout import graph

#: lowest first; packages in one layer do not import each other
LAYERS: list[set[str]] = [
    {"errors", "settings", "signals"},
    {"console"},
    {"scenario"},
    {"accounting"},
    {"infra"},
    {"brokers", "load", "protocols"},
    {"report"},
    {"spec", "workload"},
    {"runner"},
    {"bench", "live"},
    {"cli"},
    {"__main__"},
]


def package(module: str) -> str:
    """labs.infra.swarm.stack -> infra; labs.runner -> runner."""
    return module.split(".")[1]


def layer_of(pkg: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) if pkg in layer]
    assert found, f"labs.{pkg} has no layer: add it to LAYERS (and to docs/architecture.md)"
    return found[0]


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Every import that does not point to a lower layer, as 'a -> b'."""
    out = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            pa, pb = package(a), package(b)
            if pa != pb and layer_of(pb) >= layer_of(pa):
                out.append(f"{a} -> {b}")
    return out


def test_an_upward_or_sideways_import_is_found():
    assert upward({"labs.infra.stack": {"labs.runner"}}) == ["labs.infra.stack -> labs.runner"]
    assert upward({"labs.spec": {"labs.workload"}}) == ["labs.spec -> labs.workload"]
    assert upward({"labs.runner": {"labs.spec", "labs.infra.stack"}, "labs.infra.stack": {"labs.infra.usage"}}) == []


def test_every_import_of_the_harness_points_down():
    edges = {a: b for a, b in graph().items() if a != "labs" and not a.startswith("labs.app")}
    assert {package(a) for a in edges} >= {"scenario", "accounting", "infra", "runner", "bench", "cli"}
    assert upward(edges) == []


def test_nothing_outside_the_benches_imports_one():
    importers = {a for a, targets in graph().items() for b in targets
                 if package(b) == "bench" and package(a) != "bench"}
    assert importers == set()
