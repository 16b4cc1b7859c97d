"""Where each pattern saturates: `python -m labs.bench capacity` (`make bench-capacity`).

For each pattern (no broker, Redis PubSub, Redis Streams) and replica count, one stack comes up through the
lab's pipeline (plan, stack spec, nginx, replicas, broker) and locust steps the offered rate up, `users`
users in one room, until p99 passes 100 ms or a message is lost: through `--rates`, then on past the last
(x1.4 a rung) up to `--ceiling`. Each step reports offered/s, delivered/s, lost, p50/p90/p99/max and the
CPU of every container, of docker-proxy (the published port's userland proxy) and of the load generator.
The knee is the most deliveries/s with p99 <= 50 ms and nothing lost; a ladder that reached its ceiling
unbroken has none, and the result says up to which rate it held. At the knee the step runs again with one
more generator process: if the figures move, the generator was part of the bottleneck, and the result
says so.

Output: results/bench/capacity-<stamp>/ capacity.json, capacity.csv, capacity.md and the pictures.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from .. import scenario
from ..console import EXIT_PASS
from ..load import ladder
from ..report.plots import capacity_pngs
from .climb import Climb, add_arguments, broke_cell, check_climb, climb, knee_cell, ms
from .common import BenchParser, started

CSV_FIELDS = ("pattern", "replicas", "offered", "sent_per_s", "delivered_per_s", "lost", "dropped", "p50_ms",
              "p90_ms", "p99_ms", "max_ms", "generator_bound", "bottleneck", "runs", "held", "of")


def capacity_scenario(pattern: str, replicas: int, users: int) -> scenario.Scenario:
    """The headline's topology (round-robin nginx in front of the replicas), with this pattern's broker."""
    base = scenario.load("pubsub")
    top = dataclasses.replace(base.topology, replicas=replicas, broker=ladder.PATTERNS[pattern])
    wl = dataclasses.replace(base.workload, clients=users)
    return dataclasses.replace(base, name=f"capacity-{pattern}-x{replicas}", topology=top, workload=wl)


def table(configs: list[dict[str, Any]]) -> str:
    rows = ["| pattern | replicas | knee: delivered/s (offered msg/s) | p50 / p99 at the knee | busiest at the knee "
            "| broke at (offered msg/s): why | second generator process at the knee |", "|" + "---|" * 7]
    for c in configs:
        k, h = c["knee"], c["headroom"]
        if k is None:
            rows.append(f"| {c['pattern']} | {c['replicas']} | {knee_cell(c)} | - | - | {broke_cell(c)} | - |")
            continue
        second = "-" if h is None else (f"{h['second']['delivered_per_s']:.0f}/s, p99 {ms(h['second']['p99_ms'])}: "
                                        f"{h['verdict']}")
        rows.append(f"| {c['pattern']} | {c['replicas']} | {knee_cell(c)} | {ms(k['p50_ms'])} / {ms(k['p99_ms'])} "
                    f"| {k['bottleneck']} | {broke_cell(c)} | {second} |")
    return "\n".join(rows)


def write(out: Path, configs: list[dict[str, Any]], how: Climb, machine: dict[str, Any]) -> None:
    steps = [s for c in configs for s in c["steps"]]
    (out / "capacity.json").write_text(json.dumps(
        {"benchmark": "capacity", "users": how.users, "seconds": how.seconds, "runs": how.runs,
         "generator_processes": how.processes, "ladder": how.to_dict(), "knee_p99_ms": ladder.KNEE_P99_MS,
         "break_p99_ms": ladder.BREAK_P99_MS, "machine": machine, "configs": configs}, indent=2, default=str) + "\n")
    with (out / "capacity.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(steps)
    (out / "capacity.md").write_text(f"# Capacity ({how.users} users in one room, {how.seconds:g} s a step, "
                                     f"medians of {how.runs} run(s); {machine['cpus']} cores)\n\n{table(configs)}\n")
    capacity_pngs(steps, out)


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__, runs=3, runs_help="ladders per configuration (default 3)")
    p.add_argument("--patterns", default="none,pubsub,streams", help="comma-separated: none, pubsub, streams")
    p.add_argument("--replicas", default="1,2,3,4", help="comma-separated replica counts (1..8)")
    add_arguments(p, ladder.DEFAULT_RATES, driver="locust")
    return p


def run(args: argparse.Namespace) -> int:
    names = ladder.patterns(args.patterns)
    replicas = [int(n) for n in ladder.numbers(args.replicas, "replica counts", 1, 8)]
    how = check_climb(args)
    with started("capacity") as bench:
        out = bench.folder()
        configs = [climb(bench, capacity_scenario(pattern, n, how.users), {"pattern": pattern, "replicas": n}, how,
                         out) for pattern in names for n in replicas]
        write(out, configs, how, bench.machine())
    print(table(configs))
    print(f"\n-> {out}")
    return EXIT_PASS
