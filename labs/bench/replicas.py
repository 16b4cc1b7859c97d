"""The lab's Python replica against the seed article's Node server: `python -m labs.bench replicas`
(`make bench-replicas`).

Both run the same topology (3 replicas behind round-robin nginx, one Redis, Redis PubSub: the article's
server with its `pSubscribe` fix, scenarios/seed-node-pubsub.toml, beside scenarios/pubsub.toml) and are
loaded by the same generator: the Node load driver (labs/load/users.mjs, far cheaper per delivery than
locust), connected to nginx's address on the front network (no docker-proxy in between).

The primary figure is the cost (labs/bench/cost.py): each server's CPU microseconds per delivery, and per
broker message received, at `--cost-rates` (well below either knee), every variant's stack up at once and
measured side by side, `--runs` times; the ratio Python / Node first. Beside it the knees: each of `python`
and `node` laddered `--knee-runs` times until it breaks (or reaches `--ceiling` unbroken: then it has no
knee), the knee being the most deliveries/s with p99 <= 50 ms and nothing lost (labs/load/ladder.py).

Output: results/bench/replicas-<stamp>/ replicas.json, cost.csv (every cost step) and replicas.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from .. import scenario
from ..console import EXIT_PASS
from ..load import ladder
from ..load.step import check_step
from . import cost
from .climb import add_arguments, broke_cell, check_climb, climb, knee_cell, ms
from .common import BenchParser, started

IMPLEMENTATIONS = cost.IMPLEMENTATIONS
#: offered messages/s of the cost steps: with 12 users, 2,200..8,800 deliveries/s, below either knee
COST_RATES = (200, 400, 800)
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
    p = BenchParser(prog, __doc__, runs=5, runs_help="cost runs: every variant at every cost rate (default 5)")
    p.add_argument("--variants", default="python,node",
                   help="comma-separated: python, node, or python/<option>=<value>/... (reader=redis-py|raw, "
                        "json=stdlib|orjson): the python replica with those options")
    p.add_argument("--cost-rates", default=",".join(f"{r:g}" for r in COST_RATES),
                   help="offered messages/s at which the cost is measured, well below either knee")
    p.add_argument("--cost-seconds", type=float, default=4.0, help="seconds a cost step")
    p.add_argument("--knee-runs", type=int, default=1, help="ladders per implementation (default 1; 0: no knees)")
    add_arguments(p, RATES, driver="node")
    return p


def run(args: argparse.Namespace) -> int:
    variants = cost.parse_variants(args.variants)
    cost_rates = ladder.numbers(args.cost_rates, "cost rates", 1, 20_000)
    if not 0 <= args.knee_runs <= 20:
        raise ladder.LadderError(f"bad knee runs {args.knee_runs}: give 0..20")
    check_step(cost_rates[-1], args.cost_seconds)
    how = check_climb(argparse.Namespace(**{**vars(args), "runs": max(1, args.knee_runs)}), driver="node",
                      via="bridge")
    if shutil.which("node") is None:
        raise ladder.LadderError("node not found: the load driver is Node (install Node 20, then `make node-deps`)")
    knee_names = [v.label for v in variants if v.label in IMPLEMENTATIONS] if args.knee_runs else []
    with started("replicas") as bench:
        out = bench.folder()
        steps = list(cost.measure(bench, variants, rates=cost_rates, runs=args.runs, seconds=args.cost_seconds,
                                  users=how.users, out=out))
        summary = cost.summarize(steps, [v.label for v in variants], cost_rates)
        text = cost_text(summary, cost_rates, args.runs)
        print(text, flush=True)
        configs = [climb(bench, replica_scenario(name, how.users), {"implementation": name}, how, out)
                   for name in knee_names]
        machine = bench.machine()
    write_csv(out / "cost.csv", steps)
    (out / "replicas.json").write_text(json.dumps(
        {"benchmark": "replicas", "users": how.users, "machine": machine,
         "cost": {"rates": cost_rates, "runs": args.runs, "seconds": args.cost_seconds,
                  "variants": [dataclasses.asdict(v) for v in variants], "summary": summary, "steps": steps},
         "ratio_python_to_node_cost": summary.get("python", {}).get("ratio_to_node"),
         "knee_runs": args.knee_runs, "ladder": how.to_dict(), "knee_p99_ms": ladder.KNEE_P99_MS,
         "knees": {c["implementation"]: c["knee"] and {k: c["knee"][k] for k in ("delivered_per_s", "runs", "of")}
                   for c in configs},
         "unbroken_up_to": {c["implementation"]: c["unbroken_up_to"] for c in configs},
         "ratio_python_to_node": ratio(configs), "configs": configs}, indent=2, default=str) + "\n")
    knees = table(configs) if configs else "no knees measured (--knee-runs 0)"
    (out / "replicas.md").write_text(
        f"# Python replica vs the article's Node server ({how.users} users in one room, 3 replicas, Redis PubSub; "
        f"{machine['cpus']} cores)\n\n{text}\n\n## Knees ({args.knee_runs} ladder(s) each, {how.seconds:g} s a "
        f"step)\n\n{knees}\n")
    print(f"\n{knees}\n\n-> {out}")
    return EXIT_PASS


def cost_text(summary: dict[str, Any], rates: list[float], runs: int) -> str:
    """The headline: Python / Node CPU per delivery, then the cost table."""
    python = summary.get("python", {})
    r = python.get("ratio_to_node")
    head = ("Python / Node CPU per delivery: " + ("-" if r is None else f"{r:.2f}x") +
            f" (median of {python.get('pairs', 0)} side-by-side pairs: {len(rates)} rates x {runs} runs)")
    return f"{head}\n\n{cost.table(summary, rates)}"


CSV_FIELDS = ("variant", "run", "offered", "sent_per_s", "delivered_per_s", "lost", "p50_ms", "p99_ms",
              "replica_cores", "kernel_share", "us_per_delivery", "broker_messages_per_s", "us_per_broker_message", "generator",
              "other_cores", "host_cpu", "load_average")


def write_csv(path: Path, steps: list[dict[str, Any]]) -> None:
    """Every cost step, one row: its figures beside the CPU of the generator, the rest of the machine and the
    load average."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*CSV_FIELDS, "containers"])
        for s in steps:
            row = {**s, "generator": s["cpu"].get("generator"), "load_average": s["load_average"][0]}
            w.writerow([_cell(row.get(k)) for k in CSV_FIELDS]
                       + [" ".join(f"{k}={v:.3f}" for k, v in sorted(s["cpu"].items()))])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
