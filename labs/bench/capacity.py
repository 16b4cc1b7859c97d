"""Where each pattern saturates: `python -m labs.bench.capacity` (`make bench-capacity`).

For each pattern (no broker, Redis PubSub, Redis Streams) and replica count, one stack comes up through the
lab's pipeline (plan, stack spec, nginx, replicas, broker) and locust steps the offered rate up, `users`
users in one room, until p99 passes 100 ms or a message is lost. Each step reports offered/s, delivered/s,
lost, p50/p90/p99/max and the CPU of every container, of docker-proxy (the published port's userland
proxy) and of the load generator. The knee is the most deliveries/s with p99 <= 50 ms and nothing lost. At
the knee the step runs again with one more generator process: if the figures move, the generator was part
of the bottleneck, and the result says so.

Output: results/bench/capacity-<stamp>/ capacity.json, capacity.csv, capacity.md and the pictures.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .. import scenario, settings, signals
from ..cli import BenchParser, progress_printer, run_bench
from ..errors import LabError
from ..infra import inspect
from ..infra.engine import ensure_engine
from ..infra.images import ensure_images
from ..infra.launch import open_stack
from ..infra.running import RunningStack
from ..infra.stack import NGINX_PORT
from ..infra.usage import describe_machine, docker_proxies, process_cpu
from ..load import ladder
from ..load.step import LoadSpec, Session, check_step
from ..report.plots import capacity_pngs
from ..spec import describe, plan, stack_spec, utc_stamp

CSV_FIELDS = ("pattern", "replicas", "offered", "sent_per_s", "delivered_per_s", "lost", "dropped", "p50_ms",
              "p90_ms", "p99_ms", "max_ms", "generator_bound", "bottleneck", "runs", "held", "of")


def capacity_scenario(pattern: str, replicas: int, users: int) -> scenario.Scenario:
    """The headline's topology (round-robin nginx in front of the replicas), with this pattern's broker."""
    base = scenario.load("pubsub")
    top = dataclasses.replace(base.topology, replicas=replicas, broker=ladder.PATTERNS[pattern])
    wl = dataclasses.replace(base.workload, clients=users)
    return dataclasses.replace(base, name=f"capacity-{pattern}-x{replicas}", topology=top, workload=wl)


def proxy_cpu(port: int) -> dict[str, float]:
    """CPU seconds of the docker-proxy that carries the published port (a host process, not a container)."""
    return {"docker-proxy": process_cpu(pid) for pid in docker_proxies([port]).values()}


def nginx_address(stack: RunningStack, via: str) -> tuple[str, int]:
    """Where the load connects: nginx's published port on 127.0.0.1 ("published", through docker-proxy), or
    its address on the front network ("bridge": no userland proxy between the generator and nginx)."""
    if via == "published":
        return "127.0.0.1", stack.port
    nginx = stack.containers["nginx"]
    nginx.reload()
    return nginx.attrs["NetworkSettings"]["Networks"][stack.networks["front"].name]["IPAddress"], NGINX_PORT


def one_config(client: Any, images: Any, sc: scenario.Scenario, tags: dict[str, Any], args: argparse.Namespace,
               out: Path, progress: Callable[[str], None], *, driver: str = "locust",
               via: str = "published") -> dict[str, Any]:
    """One stack for scenario `sc`, one ladder per run, then the headroom check at the knee. `tags` (the
    pattern and replica count, or the implementation) go into every step and the result."""
    p = plan(sc)
    spec, note = stack_spec(client, p, images)
    progress(describe(p, spec, note))
    broker = sc.topology.broker is not scenario.Broker.NONE
    runs: list[list[dict[str, Any]]] = []
    locust: list[dict[str, Any]] = []
    with open_stack(client, spec, progress=progress) as stack:
        host, port = nginx_address(stack, via)

        def probe() -> dict[str, float]:
            return {**inspect.cpu_seconds(stack), **(proxy_cpu(stack.port) if via == "published" else {})}

        def session(processes: int, tag: str) -> Session:
            spec = LoadSpec(users=args.users, processes=processes, driver=driver, host=host)
            return Session(port, spec, out / "steps" / f"{p.scenario.name}-{tag}", broker=broker, cpu_probe=probe)

        def step(load: Session, rate: float, tag: str) -> dict[str, Any]:
            d = {**tags, **load.step(rate, args.seconds).to_dict()}
            d["bottleneck"] = ladder.bottleneck(d)
            progress(f"{p.scenario.name} {tag}: offered {rate:g}/s, delivered {d['delivered_per_s']:.0f}/s, "
                     f"lost {d['lost']}, p50 {_ms(d['p50_ms'])}, p99 {_ms(d['p99_ms'])}; busiest {d['bottleneck']}"
                     + ("; generator-bound" if d["generator_bound"] else ""))
            return d

        for i in range(args.runs):
            steps: list[dict[str, Any]] = []
            with session(args.processes, f"run{i + 1}") as load:
                for rate in args.rates:
                    steps.append(step(load, rate, f"run {i + 1}"))
                    if ladder.broken(steps[-1]):
                        break
            runs.append(steps)
            # locust's own count of deliveries over the session, beside the users' tallies
            if driver == "locust":
                locust.append({"run": i + 1, "deliver": load.locust.get("deliver", {}),
                               "tallied": sum(s["delivered"] + s["duplicated"] + s["unexpected"] for s in steps)})
        medians = ladder.median_steps(runs)
        best = ladder.knee(medians)
        headroom = None
        if best is not None:
            with session(args.processes + 1, "headroom") as load:
                again = step(load, best["offered"], f"{args.processes + 1} generator processes")
            headroom = {"rate": best["offered"], "processes": [args.processes, args.processes + 1],
                        "first": {k: best[k] for k in ("delivered_per_s", "p50_ms", "p99_ms", "runs", "of")},
                        "second": {k: again[k] for k in ("delivered_per_s", "p50_ms", "p99_ms")},
                        "verdict": ladder.headroom(best, again), "step": again}
    return {**tags, "runs": runs, "steps": medians, "knee": best, "headroom": headroom, "locust": locust}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def table(configs: list[dict[str, Any]]) -> str:
    rows = ["| pattern | replicas | knee: delivered/s (offered msg/s) | p50 / p99 at the knee | busiest at the knee "
            "| broke at (offered msg/s): why | second generator process at the knee |", "|" + "---|" * 7]
    for c in configs:
        k, steps = c["knee"], c["steps"]
        last = next((s for s in steps if ladder.broken(s)), None)  # the first rate where a run had broken
        why = "-" if last is None else ladder.why_broken(last)
        h = c["headroom"]
        second = "-" if h is None else (f"{h['second']['delivered_per_s']:.0f}/s, p99 {_ms(h['second']['p99_ms'])}: "
                                        f"{h['verdict']}")
        if k is None:
            rows.append(f"| {c['pattern']} | {c['replicas']} | none within 50 ms | - | - | {why} | - |")
            continue
        rows.append(f"| {c['pattern']} | {c['replicas']} | {k['delivered_per_s']:.0f} ({k['offered']:g}) "
                    f"| {_ms(k['p50_ms'])} / {_ms(k['p99_ms'])} | {k['bottleneck']} | {why} | {second} |")
    return "\n".join(rows)


def write(out: Path, configs: list[dict[str, Any]], args: argparse.Namespace, engine: str) -> None:
    steps = [s for c in configs for s in c["steps"]]
    machine = describe_machine(engine)
    (out / "capacity.json").write_text(json.dumps(
        {"benchmark": "capacity", "users": args.users, "seconds": args.seconds, "runs": args.runs,
         "generator_processes": args.processes, "knee_p99_ms": ladder.KNEE_P99_MS,
         "break_p99_ms": ladder.BREAK_P99_MS, "machine": machine, "configs": configs}, indent=2, default=str) + "\n")
    with (out / "capacity.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(steps)
    (out / "capacity.md").write_text(f"# Capacity ({args.users} users in one room, {args.seconds:g} s a step, "
                                     f"medians of {args.runs} run(s); {machine['cpus']} cores)\n\n{table(configs)}\n")
    capacity_pngs(steps, out)


def check_ladder(args: argparse.Namespace, driver: str = "locust") -> None:
    """The ladder's own arguments (rates, runs, users, generator processes, step seconds), checked before
    anything starts; `args.rates` becomes the list of rates. LabError names what is wrong."""
    args.rates = ladder.numbers(args.rates, "rates", 1, 100_000)
    if not 1 <= args.runs <= 20 or not 2 <= args.users <= 1000:
        raise ladder.LadderError("runs must be 1..20 and users 2..1000")
    for processes in (args.processes, args.processes + 1):  # the ladder's, and the headroom check's
        LoadSpec(users=args.users, processes=processes, driver=driver)
    check_step(args.rates[-1], args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m labs.bench.capacity", __doc__, runs=3,
                         runs_help="ladders per configuration (default 3)")
    parser.add_argument("--patterns", default="none,pubsub,streams", help="comma-separated: none, pubsub, streams")
    parser.add_argument("--replicas", default="1,2,3,4", help="comma-separated replica counts (1..8)")
    parser.add_argument("--rates", default=",".join(map(str, ladder.DEFAULT_RATES)),
                        help="offered messages/s, increasing")
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    args = parser.parse_args(argv)
    progress = progress_printer(settings.QUIET)
    try:
        names = ladder.patterns(args.patterns)
        replicas = [int(n) for n in ladder.numbers(args.replicas, "replica counts", 1, 8)]
        check_ladder(args)
    except LabError as exc:
        print(f"wslab: {exc}", file=sys.stderr)
        return 2
    signals.install()
    client = ensure_engine(progress=progress)
    images = ensure_images(client, progress=progress)
    out = settings.RESULTS_DIR / "bench" / f"capacity-{utc_stamp()}"
    out.mkdir(parents=True)
    configs = [one_config(client, images, capacity_scenario(pattern, n, args.users), {"pattern": pattern, "replicas": n},
                          args, out, progress) for pattern in names for n in replicas]
    write(out, configs, args, client.version().get("Version", "?"))
    client.close()
    print(table(configs))
    print(f"\n-> {out}")
    return 0


if __name__ == "__main__":
    run_bench(main, "bench-capacity")
