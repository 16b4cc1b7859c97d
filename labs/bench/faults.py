"""What each broker guarantees under faults, over several runs: `python -m labs.bench faults --runs 10`
(`make bench-faults`).

Runs every `fault-*` scenario `runs` times through the pipeline and writes the medians (and ranges) of its
counts to results/bench/faults-<stamp>.json, and the README's table to stdout. The counts move from run to
run; a verdict that is not as declared in any run shows in the "verdict as declared" column. A run whose
checker crashed measured nothing: it adds to no median; a figure a run did not measure (None) is left out
of that figure's median, and the cell says on how many runs the median rests and how many were left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from typing import Any

from .. import scenario
from ..console import EXIT_FAIL, EXIT_PASS
from ..runner import execute
from ..spec import plan
from .common import BenchParser, started

FAULT_TEXT = {
    "kill-pubsub-clients": "CLIENT KILL TYPE pubsub", "kill-replica": "kill {t} (SIGKILL), restart",
    "partition-replica": "cut {t} off {b}", "pause-redis": "pause Redis", "restart-redis": "restart Redis",
    "slow-consumer": "slow consumer {t}", "pause-broker": "pause {b}", "restart-broker": "restart {b}",
    "kill-cluster-master": "kill master {t} (SIGKILL), restart", "kill-node": "kill {t}'s engine",
    "partition-node": "cut {t} off", "drain-node": "drain {t}", "scale-out": "scale out: {t} added",
    "scale-in": "scale in: {t} drained, stopped", "rolling-restart": "rolling restart of {t}", "reload-lb": "reload nginx",
    "close-transports": "clients on {t} close their transports",
}
COLUMNS = ("lost", "lost_outside_fault", "duplicated", "nacked", "recovered", "trimmed", "max_gap_s")
FIGURES = COLUMNS + ("sent", "expected")


def record(result: Any) -> dict[str, Any]:
    """One run's figures and verdict. A checker that crashed (no accounting, or the zero one that comes with
    a "checker failed" verdict) measured nothing: every figure is None."""
    failed = result.accounting is None or result.verdict.reason.startswith("checker failed")
    figures = {k: None if failed else getattr(result.accounting, k) for k in FIGURES}
    return {**figures, "passed": result.passed, "checker_failed": failed}


def summarize(values: list[float | None]) -> dict[str, Any]:
    """Median and range over the runs that measured the figure; how many they were, how many were left out."""
    got = [v for v in values if v is not None]
    return {"median": statistics.median(got) if got else None, "min": min(got, default=None),
            "max": max(got, default=None), "runs": len(got), "left_out": len(values) - len(got)}


def medians(got: list[dict[str, Any]], keys: Sequence[str] = FIGURES) -> dict[str, dict[str, Any]]:
    return {k: summarize([g[k] for g in got]) for k in keys}


def number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.3f}"


def cell(m: dict[str, Any]) -> str:
    """The median, the range when the runs differ, and the runs behind it when some were left out:
    `185 (180-200)`, `27 on 2 runs, 1 left out`, `- on 0 runs, 3 left out`."""
    text = "-" if m["median"] is None else number(m["median"])
    if m["median"] is not None and m["min"] != m["max"]:
        text += f" ({number(m['min'])}-{number(m['max'])})"
    if m["left_out"]:
        text += f" on {m['runs']} run{'' if m['runs'] == 1 else 's'}, {m['left_out']} left out"
    return text


def row(s: scenario.Scenario, got: list[dict[str, Any]]) -> str:
    """The README table's row for one fault scenario over its runs."""
    broker = s.topology.broker.facts
    fault = ", ".join(FAULT_TEXT[f.kind.value].format(t=f.target, b=broker.server or "the broker") for f in s.faults)
    crashed = sum(g["checker_failed"] for g in got)
    cells = [f"`{s.name}`", fault, broker.label,
             f"{sum(g['passed'] for g in got)}/{len(got)} runs" + (f", {crashed} checker failed" if crashed else "")]
    m = medians(got, COLUMNS)
    cells += [cell(m[k]) for k in COLUMNS]
    return "| " + " | ".join(cells) + " |"


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__, runs=10, runs_help="runs of each scenario (default 10)")
    p.add_argument("scenarios", nargs="*", help="fault scenarios (default: every fault-* scenario)")
    return p


def run(args: argparse.Namespace) -> int:
    names = args.scenarios or [n for n in scenario.available() if n.startswith("fault-")]
    plans = [plan(scenario.load(n)) for n in names]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with started("faults") as bench:
        for i in range(args.runs):
            for p in plans:
                r = execute(bench.client, p, bench.images, progress=bench.progress)
                got = record(r)
                runs[p.scenario.name].append(got)
                counts = {k: got[k] for k in COLUMNS}
                bench.progress(f"run {i + 1}/{args.runs} {p.scenario.name}: {r.verdict_text} {counts}")
        out = bench.file(".json")
        machine = bench.machine()
    rows = ["| scenario | fault | broker | verdict as declared | lost | lost outside the fault window | duplicated "
            "| nacked | recovered after reconnect | trimmed | max gap s |", "|" + "---|" * 11]
    rows += [row(p.scenario, runs[p.scenario.name]) for p in plans]
    out.write_text(json.dumps({"benchmark": "faults", "runs": args.runs, "results": runs,
                               "medians": {name: medians(got) for name, got in runs.items()},
                               "machine": machine}, indent=2))
    print("\n".join(rows))
    print(f"\n(medians over {args.runs} runs each, unless a cell says on how many; {out})")
    return EXIT_PASS if all(g["passed"] for got in runs.values() for g in got) else EXIT_FAIL
