"""The default stack at its sized capacity (a benchmark, not a test): `python -m labs.bench defaults`
(`make bench-defaults`).

Starts the stack exactly as `python -m labs up pubsub` does (spec.plan sizes it for this host's open-file
limit, labs/infra/sizing.py: 20,000 connections here; spec.stack_spec; launch.open_stack), opens that many
WebSocket connections from this host with the connection bench's load processes, holds them, sends one
broadcast, and counts what was refused: connections that failed (an HTTP error such as 502, a reset, a
timeout) or were closed while held, and receipts lost. Exit 0 only when nothing was. Writes
results/bench/defaults-<stamp>/defaults.json and defaults.md.

The way in (`--via`): `bridge` (the default) is nginx's address on the stack's front network, the
`load tools:` line `up` prints; `published` is the 127.0.0.1 port `up` prints. An engine the lab started
carries it by netfilter; one started with its userland proxy (dockerd's default) passes it through one
docker-proxy process, and that holds 6 files per connection (~3,300 connections under a 20,000-file limit).
`--workers 1 --worker-connections 4096` renders nginx as the lab had it before it was sized, to show that the
bench fails when the stack cannot hold the load.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import scenario
from ..console import EXIT_FAIL, EXIT_PASS
from ..infra.engine import userland_proxy
from ..infra.stack import StackSpec
from ..spec import Plan, plan, stack_spec
from .common import BenchParser, started
from .connections.plan import Layout, PlanError, Via, layout_on, merge, nearest_limits, proxy_capacity
from .connections.ramp import parse_ramp
from .connections.report import bound, summary, usage, write
from .connections.run import add_arguments, run_setup
from .connections.setup import Setup, conntrack, ephemeral_ports, parse_count, parse_rounds, parse_via

#: the scenario whose stack is measured, as `python -m labs up pubsub` starts it
SCENARIO = "pubsub"


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__)
    p.add_argument("--runs", default="1", help="whole runs, each on a fresh stack (default 1)")
    p.add_argument("--via", default=Via.BRIDGE.value,
                   help="bridge (nginx's front-network address; the default) or published (127.0.0.1, docker-proxy)")
    p.add_argument("--connections", "-n", default=None, help="N (default: what the stack is sized to hold)")
    p.add_argument("--workers", default=None, help="nginx workers instead of the sizing's")
    p.add_argument("--worker-connections", default=None, help="nginx worker_connections instead of the sizing's")
    add_arguments(p)
    p.set_defaults(broadcasts="1")
    return p


def sized_plan(workers: str | None, worker_connections: str | None) -> Plan:
    """`up`'s plan of the scenario, with nginx's workers or connections replaced when given."""
    p = plan(scenario.load(SCENARIO))
    sizing = p.sizing
    if workers is not None:
        sizing = dataclasses.replace(sizing, nginx_workers=parse_count(workers))
    if worker_connections is not None:
        sizing = dataclasses.replace(sizing, worker_connections=parse_count(worker_connections))
    return dataclasses.replace(p, sizing=sizing)


def plan_run(p: Plan, connections: str | None, via: str) -> Layout:
    """The load side: N connections (the sizing's unless given) on the stack's one nginx port."""
    n = p.sizing.connections if connections is None else parse_count(connections)
    if n < 1:
        raise PlanError(f"N={n}: give at least 1")
    return layout_on(dataclasses.replace(p.sizing, wanted=n), ports=1, via=parse_via(via),
                     ephemeral_ports=ephemeral_ports(), conntrack_max=conntrack("nf_conntrack_max"))


def refused(run: dict[str, Any]) -> int:
    """Connections that failed to open or were closed while held."""
    return int(run["failed"]) + sum(run.get("closed_while_held", {}).values())


def run(args: argparse.Namespace) -> int:
    runs_n, broadcasts = parse_rounds(args.runs, args.broadcasts)
    ramp = parse_ramp(args.rate)
    p = sized_plan(args.workers, args.worker_connections)
    layout = plan_run(p, args.connections, args.via)
    # a published port without docker-proxy (dockerd --userland-proxy=false, as the lab starts it) is bounded
    # like nginx's own address: by the ephemeral source ports, not by one process's files
    proxied = layout.via is Via.PUBLISHED and userland_proxy() is not False
    way_in = proxy_capacity(Via.PUBLISHED if proxied else Via.BRIDGE, p.sizing.fd_limit, layout.ephemeral_ports)
    with started("defaults") as bench:
        bench.progress(f"the stack of `python -m labs up {SCENARIO}`: {p.sizing.describe()}; way in: {layout.via.value}"
                       f"{' through docker-proxy' if proxied else ''} (planned to carry {way_in:,})")

        def spec() -> StackSpec:
            return stack_spec(bench.client, p, bench.images)[0]

        runs = run_setup(bench, layout, Setup(), runs=runs_n, broadcasts=broadcasts,
                         collect_timeout=args.collect_timeout, open_timeout=args.open_timeout, spec=spec,
                         ramp=ramp)
        machine = bench.machine()
        out = bench.folder()
    limits = max((nearest_limits(usage(r, layout)) for r in runs), key=lambda ls: ls[0][1])
    counts = [refused(r) for r in runs]
    result: dict[str, Any] = {
        "benchmark": "defaults", "scenario": SCENARIO, "runs": runs_n, "broadcasts": broadcasts,
        "sizing": dataclasses.asdict(p.sizing), "way_in": {"via": layout.via.value, "docker_proxy": proxied, "planned": way_in},
        "setup": {"text": f"the stack of `python -m labs up {SCENARIO}` ({p.sizing.describe()})"},
        "layout": {**dataclasses.asdict(layout), "via": layout.via.value, "listen_ports": list(layout.listen_ports)},
        "refused": {"per_run": counts, "connect_errors": merge([r["connect_errors"] for r in runs]),
                    "closed_while_held": merge([r.get("closed_while_held", {}) for r in runs]),
                    "nginx_errors": merge([r["nginx_errors"] for r in runs])},
        "summary": summary(runs), "limits": limits, "bound": bound(runs, limits), "results": runs, "machine": machine}
    intro = (f"Refused (failed to open: HTTP errors, resets, timeouts; or closed while held), per run: "
             f"{', '.join(map(str, counts))}; lost receipts: {result['summary']['lost']}.", "")
    write(result, out, name="defaults", intro=intro)
    print((out / "defaults.md").read_text())
    print(f"-> {out}")
    ok = all(c == 0 for c in counts) and result["summary"]["lost"] == 0 and result["summary"]["acked"] > 0
    return EXIT_PASS if ok else EXIT_FAIL
