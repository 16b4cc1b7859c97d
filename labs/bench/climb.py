"""One configuration's ladders on a real stack, for `capacity` and `replicas`: the stack up through the lab's
pipeline, one ladder per run climbing until a step breaks or the ceiling is reached (labs/load/ladder.py),
the medians of the runs, the knee, and at the knee the same step with one more generator process (if the
figures move, the generator was part of the bottleneck)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import scenario
from ..infra import inspect
from ..infra.balancers import LISTEN_PORT
from ..infra.launch import open_stack
from ..infra.running import RunningStack
from ..infra.usage import docker_proxies, process_cpu
from ..load import ladder
from ..load.step import LoadSpec, Session, check_step
from ..spec import describe, plan, stack_spec
from .common import BenchParser, Started


@dataclass(frozen=True)
class Climb:
    """How every ladder of a bench climbs: the given rates, then on up to `ceiling`; `runs` ladders per
    configuration, `users` users in one room, `seconds` a step, `processes` generator processes."""

    rates: tuple[float, ...]
    ceiling: float
    runs: int
    users: int
    seconds: float
    processes: int
    driver: str = "locust"
    via: str = "published"

    def to_dict(self) -> dict[str, Any]:
        return {"rates": list(self.rates), "ceiling": self.ceiling, "runs": self.runs, "users": self.users,
                "seconds": self.seconds, "generator_processes": self.processes, "driver": self.driver,
                "via": self.via}


def add_arguments(parser: BenchParser, rates: tuple[float, ...], *, driver: str) -> None:
    """The ladder's options: --rates, --ceiling, --users, --seconds, --processes."""
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in rates),
                        help="offered messages/s, increasing; the ladder climbs on past the last until it breaks")
    parser.add_argument("--ceiling", type=float, default=ladder.CEILING,
                        help=f"the highest rate a ladder climbs to (default {ladder.CEILING:g}); reached unbroken, "
                             "the result says so and names no knee")
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--processes", type=int, default=1, help=f"{driver} load driver worker processes")


def check_climb(args: argparse.Namespace, *, driver: str = "locust", via: str = "published") -> Climb:
    """The ladder's own arguments, checked before anything starts. LabError names what is wrong."""
    rates = ladder.numbers(args.rates, "rates", 1, ladder.CEILING)
    if not rates[-1] <= args.ceiling <= ladder.CEILING:
        raise ladder.LadderError(f"bad ceiling {args.ceiling:g}: give {rates[-1]:g}..{ladder.CEILING:g} "
                                 "(at least the last rate)")
    if not 1 <= args.runs <= 20 or not 2 <= args.users <= 1000:
        raise ladder.LadderError("runs must be 1..20 and users 2..1000")
    for processes in (args.processes, args.processes + 1):  # the ladder's, and the headroom check's
        LoadSpec(users=args.users, processes=processes, driver=driver)
    check_step(args.ceiling, args.seconds)
    return Climb(tuple(rates), args.ceiling, args.runs, args.users, args.seconds, args.processes, driver, via)


def proxy_cpu(port: int) -> dict[str, float]:
    """CPU seconds of the docker-proxy that carries the published port (a host process, not a container);
    nothing when netfilter carries it (dockerd --userland-proxy=false): no process to read."""
    pids = docker_proxies([port]).values()
    return {"docker-proxy": sum(process_cpu(pid) for pid in pids)} if pids else {}


def nginx_address(stack: RunningStack, via: str) -> tuple[str, int]:
    """Where the load connects: nginx's published port on 127.0.0.1 ("published", through docker-proxy), or
    its address on the front network ("bridge": no userland proxy between the generator and nginx)."""
    if via == "published":
        return "127.0.0.1", stack.port
    nginx = stack.containers["nginx"]
    nginx.reload()
    return nginx.attrs["NetworkSettings"]["Networks"][stack.networks["front"].name]["IPAddress"], LISTEN_PORT


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def climb(bench: Started, sc: scenario.Scenario, tags: dict[str, Any], how: Climb, out: Path) -> dict[str, Any]:
    """One stack for scenario `sc`, one ladder per run, then the headroom check at the knee. `tags` (the
    pattern and replica count, or the implementation) go into every step and the result."""
    progress = bench.progress
    p = plan(sc)
    spec, note = stack_spec(bench.client, p, bench.images)
    progress(describe(p, spec, note))
    broker = sc.topology.broker is not scenario.Broker.NONE
    runs: list[list[dict[str, Any]]] = []
    locust: list[dict[str, Any]] = []
    with open_stack(bench.client, spec, progress=progress) as stack:
        host, port = nginx_address(stack, how.via)

        def probe() -> dict[str, float]:
            return {**inspect.cpu_seconds(stack), **(proxy_cpu(stack.port) if how.via == "published" else {})}

        def session(processes: int, tag: str) -> Session:
            load = LoadSpec(users=how.users, processes=processes, driver=how.driver, host=host)
            return Session(port, load, out / "steps" / f"{p.scenario.name}-{tag}", broker=broker, cpu_probe=probe)

        def step(load: Session, rate: float, tag: str) -> dict[str, Any]:
            d = {**tags, **load.step(rate, how.seconds).to_dict(), "load_average": os.getloadavg()}
            d["bottleneck"] = ladder.bottleneck(d)
            progress(f"{p.scenario.name} {tag}: offered {rate:g}/s, delivered {d['delivered_per_s']:.0f}/s, "
                     f"lost {d['lost']}, p50 {ms(d['p50_ms'])}, p99 {ms(d['p99_ms'])}; busiest {d['bottleneck']}"
                     + ("; generator-bound" if d["generator_bound"] else ""))
            return d

        for i in range(how.runs):
            steps: list[dict[str, Any]] = []
            with session(how.processes, f"run{i + 1}") as load:
                for rate in ladder.rungs(how.rates, how.ceiling):
                    steps.append(step(load, rate, f"run {i + 1}"))
                    if ladder.broken(steps[-1]):
                        break
            runs.append(steps)
            # locust's own count of deliveries over the session, beside the users' tallies
            if how.driver == "locust":
                locust.append({"run": i + 1, "deliver": load.locust.get("deliver", {}),
                               "tallied": sum(s["delivered"] + s["duplicated"] + s["unexpected"] for s in steps)})
        medians = ladder.median_steps(runs)
        best = ladder.knee(medians)
        headroom = None
        if best is not None:
            with session(how.processes + 1, "headroom") as load:
                again = step(load, best["offered"], f"{how.processes + 1} generator processes")
            headroom = {"rate": best["offered"], "processes": [how.processes, how.processes + 1],
                        "first": {k: best[k] for k in ("delivered_per_s", "p50_ms", "p99_ms", "runs", "of")},
                        "second": {k: again[k] for k in ("delivered_per_s", "p50_ms", "p99_ms")},
                        "verdict": ladder.headroom(best, again), "step": again}
    return {**tags, "runs": runs, "steps": medians, "knee": best, "unbroken_up_to": ladder.unbroken_up_to(medians),
            "headroom": headroom, "locust": locust}


def knee_cell(config: dict[str, Any]) -> str:
    """The knee as a table cell: `delivered/s (offered)`, or why there is none."""
    k, top = config["knee"], config.get("unbroken_up_to")
    if k is not None:
        return f"{k['delivered_per_s']:.0f} ({k['offered']:g})"
    if top is not None:
        return f"none: unbroken up to {top:g} msg/s"
    return f"none within {ladder.KNEE_P99_MS:g} ms"


def broke_cell(config: dict[str, Any]) -> str:
    """Where the ladder broke and why (`<offered>: <why>`), or `-` when it never did."""
    first = next((s for s in config["steps"] if ladder.broken(s)), None)  # the first rate where a run had broken
    return "-" if first is None else ladder.why_broken(first)

