"""What each broker guarantees under faults, over several runs: `python -m labs.bench_faults --runs 10`.

Runs every `fault-*` scenario `runs` times through the pipeline and writes the medians (and ranges) of its
counts to results/bench/faults-<stamp>.json, and the README's table to stdout. The counts move from run to
run; a verdict that is not as declared in any run shows in the "verdict as declared" column.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from . import scenario, settings, signals
from .cli import BenchParser, progress_printer, run_bench
from .infra.engine import ensure_engine
from .infra.images import ensure_images
from .infra.usage import describe_machine
from .runner import execute, plan, utc_stamp

FAULT_TEXT = {
    "kill-pubsub-clients": "CLIENT KILL TYPE pubsub", "kill-replica": "kill {t} (SIGKILL), restart",
    "partition-replica": "cut {t} off {b}", "pause-redis": "pause Redis", "restart-redis": "restart Redis",
    "slow-consumer": "slow consumer {t}", "pause-broker": "pause {b}", "restart-broker": "restart {b}",
    "kill-cluster-master": "kill master {t} (SIGKILL), restart", "kill-node": "kill {t}'s engine",
    "partition-node": "cut {t} off", "drain-node": "drain {t}",
}
BROKERS = {"redis-pubsub": "PubSub", "redis-streams": "Streams", "nats": "NATS", "nats-jetstream": "JetStream",
           "redis-cluster-pubsub": "Cluster PUBLISH", "redis-cluster-sharded": "Cluster sharded"}
#: the broker's server, by its container, as the fault column names it
SERVERS = {"redis": "Redis", "nats": "nats-server"}
COLUMNS = ("lost", "lost_outside_fault", "duplicated", "nacked", "recovered", "trimmed", "max_gap_s")


def number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.3f}"


def spread(values: list[float]) -> str:
    """The median, and the range when the runs differ: `185 (180-200)`."""
    text = number(statistics.median(values))
    return f"{text} ({number(min(values))}-{number(max(values))})" if min(values) != max(values) else text


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m labs.bench_faults", __doc__, runs=10,
                         runs_help="runs of each scenario (default 10)")
    parser.add_argument("scenarios", nargs="*", help="fault scenarios (default: every fault-* scenario)")
    args = parser.parse_args(argv)
    signals.install()
    progress = progress_printer(settings.QUIET)
    names = args.scenarios or [n for n in scenario.available() if n.startswith("fault-")]
    plans = [plan(scenario.load(n)) for n in names]
    client = ensure_engine(progress=progress)
    images = ensure_images(client, progress=progress)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(args.runs):
        for p in plans:
            r = execute(client, p, images, progress=progress)
            counts = {k: getattr(r.accounting, k) for k in COLUMNS}
            runs[p.scenario.name].append({**counts, "passed": r.passed, "sent": r.accounting.sent,
                                          "expected": r.accounting.expected})
            progress(f"run {i + 1}/{args.runs} {p.scenario.name}: {r.verdict_text} {counts}")
    rows = ["| scenario | fault | broker | verdict as declared | lost | lost outside the fault window | duplicated "
            "| nacked | recovered after reconnect | trimmed | max gap s |", "|" + "---|" * 11]
    for p in plans:
        s, got = p.scenario, runs[p.scenario.name]
        server = SERVERS.get(s.topology.broker.container or "", "the broker")
        fault = ", ".join(FAULT_TEXT[f.kind.value].format(t=f.target, b=server) for f in s.faults)
        cells = [f"`{s.name}`", fault, BROKERS.get(s.topology.broker.value, s.topology.broker.value),
                 f"{sum(g['passed'] for g in got)}/{len(got)} runs"]
        cells += [spread([g[k] for g in got]) for k in COLUMNS]
        rows.append("| " + " | ".join(cells) + " |")
    out = settings.RESULTS_DIR / "bench" / f"faults-{utc_stamp()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "faults", "runs": args.runs, "results": runs,
                               "machine": describe_machine(client.version().get("Version", "?"))}, indent=2))
    print("\n".join(rows))
    print(f"\n({args.runs} runs each; {out})")
    client.close()
    return 0 if all(g["passed"] for got in runs.values() for g in got) else 1


if __name__ == "__main__":
    run_bench(main, "bench-faults")
