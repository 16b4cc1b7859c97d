"""The lab's Python replica against the seed article's Node server: `python -m labs.bench replicas`
(`make bench-replicas`).

Both run the same topology (3 replicas behind round-robin nginx, one Redis, Redis PubSub: the article's
server with its `pSubscribe` fix, scenarios/seed-node-pubsub.toml, beside scenarios/pubsub.toml), in the same
run, stepped up by the same generator: the Node load driver (labs/load/users.mjs, far cheaper per delivery
than locust, so that the replicas and not the generator saturate the two cores), connected to nginx's
address on the front network (no docker-proxy in between). Each is laddered until it breaks (or reaches
`--ceiling` unbroken: then it has no knee), and its knee is the most deliveries/s with p99 <= 50 ms and
nothing lost (labs/load/ladder.py); the result is the ratio of the knees, Python / Node, with the replicas'
CPU per delivery at each step.

Output: results/bench/replicas-<stamp>/ replicas.json and replicas.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
from typing import Any

from .. import scenario
from ..console import EXIT_PASS
from ..load import ladder
from .climb import add_arguments, broke_cell, check_climb, climb, knee_cell, ms
from .common import BenchParser, started

#: implementation -> the scenario whose topology it runs
IMPLEMENTATIONS = {"python": "pubsub", "node": "seed-node-pubsub"}
RATES = (200, 400, 700, 1000, 1200, 1400, 1700, 2000, 2400, 2800, 3400, 4000, 5600, 8000, 11000, 16000)


def replica_scenario(implementation: str, users: int) -> scenario.Scenario:
    base = scenario.load(IMPLEMENTATIONS[implementation])
    return dataclasses.replace(base, name=f"replicas-{implementation}",
                               workload=dataclasses.replace(base.workload, clients=users))


def replica_us_per_delivery(step: dict[str, Any]) -> float | None:
    """CPU microseconds the replicas (all of them) spent per delivery in a step."""
    cores = sum(v for k, v in (step.get("cpu") or {}).items() if k.startswith("app-"))
    return cores / step["delivered_per_s"] * 1e6 if step.get("delivered_per_s") else None


def ratio(configs: list[dict[str, Any]]) -> float | None:
    """Python's knee / Node's knee, in deliveries/s; None when either has no knee."""
    knees = {c["implementation"]: c["knee"] for c in configs}
    python, node = knees.get("python"), knees.get("node")
    if not python or not node:
        return None
    return float(python["delivered_per_s"] / node["delivered_per_s"])


def table(configs: list[dict[str, Any]]) -> str:
    rows = ["| implementation | knee: delivered/s (offered msg/s) | p50 / p99 at the knee | replica CPU µs per "
            "delivery (median over steps) | busiest at the knee | broke at (offered msg/s): why |", "|" + "---|" * 6]
    for c in configs:
        k = c["knee"]
        costs = [u for s in c["steps"] if (u := replica_us_per_delivery(s)) is not None]
        cost = f"{statistics.median(costs):.0f}" if costs else "-"
        if k is None:
            rows.append(f"| {c['implementation']} | {knee_cell(c)} | - | {cost} | - | {broke_cell(c)} |")
            continue
        rows.append(f"| {c['implementation']} | {knee_cell(c)} | {ms(k['p50_ms'])} / {ms(k['p99_ms'])} | {cost} "
                    f"| {k['bottleneck']} | {broke_cell(c)} |")
    r = ratio(configs)
    return "\n".join(rows) + ("\n\nPython / Node knee: " + ("-" if r is None else f"{r:.2f}x"))


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__, runs=3, runs_help="ladders per implementation (default 3)")
    p.add_argument("--implementations", default="python,node", help="comma-separated: python, node")
    add_arguments(p, RATES, driver="node")
    return p


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.implementations.split(",") if n.strip()]
    if not names or any(n not in IMPLEMENTATIONS for n in names):
        raise ladder.LadderError(f"bad implementations {args.implementations!r}; choose from "
                                 f"{', '.join(IMPLEMENTATIONS)}")
    how = check_climb(args, driver="node", via="bridge")
    if shutil.which("node") is None:
        raise ladder.LadderError("node not found: the load driver is Node (install Node 20, then `make node-deps`)")
    with started("replicas") as bench:
        out = bench.folder()
        configs = [climb(bench, replica_scenario(name, how.users), {"implementation": name}, how, out)
                   for name in names]
        machine = bench.machine()
    (out / "replicas.json").write_text(json.dumps(
        {"benchmark": "replicas", "users": how.users, "seconds": how.seconds, "runs": how.runs,
         "driver": how.driver, "via": how.via, "ladder": how.to_dict(), "knee_p99_ms": ladder.KNEE_P99_MS,
         "machine": machine,
         "knees": {c["implementation"]: c["knee"] and {k: c["knee"][k] for k in ("delivered_per_s", "runs", "of")}
                   for c in configs},
         "unbroken_up_to": {c["implementation"]: c["unbroken_up_to"] for c in configs},
         "ratio_python_to_node": ratio(configs), "configs": configs}, indent=2, default=str) + "\n")
    text = table(configs)
    (out / "replicas.md").write_text(f"# Python replica vs the article's Node server ({how.users} users in one "
                                     f"room, 3 replicas, Redis PubSub, {how.seconds:g} s a step, medians of "
                                     f"{how.runs} run(s); {machine['cpus']} cores)\n\n{text}\n")
    print(text)
    print(f"\n-> {out}")
    return EXIT_PASS
