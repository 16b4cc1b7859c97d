"""Connection scale (a benchmark, not a test): `python -m labs.bench connections --connections 20000`
(`make bench-connections`).

Opens N mostly idle WebSocket connections through the lab's nginx to the replicas, in one room or spread
over `--rooms` (connection i joins room i mod R), then broadcasts a few rounds: one message into every room
at once, from the room's first member. The broker (`--broker`: one Redis with Pub/Sub, a Redis Cluster of
`--masters` masters with classic or sharded Pub/Sub, or none), nginx's policy (`--balance room` partitions
the rooms over the replicas) and the replica count (`--replicas`, at least what the layout needs) are the
setup (connections/setup.py); `python -m labs.bench partitioning` compares setups. Writes
results/bench/connections-<stamp>/connections.json and connections.md: the connect rate, resident memory per
connection per replica (the replica's own RSS delta over the connections it holds), the seconds until 50%,
95% and 100% of a round's deliveries arrived (medians), loss, what each replica and broker node did and used
of the CPU (its connections, rooms, PUBLISH calls and their time inside Redis), and what each kind of
process used of its open-file limit, so the result says what bounds it.

`labs.bench.connections.plan.plan_layout` decides how many load processes, published ports (one docker-proxy
each), nginx workers and replicas carry N under the host's hard `nofile` limit. `--via bridge` reaches nginx
on its front-network address instead (no docker-proxy, nothing more published). `--rate` paces the ramp
(`ramp.py`: a fixed rate, or `auto`, which steps up while nothing is lost; `--ramp-limit` ends it), the
connections are then held idle `--hold` seconds to measure what holding them costs, and the host's conntrack
table gets room for the run (`tracking.py`). The load processes
(`labs.bench.connections.client`) run in their own process group, killed on every exit path; the containers
are the lab's stack (`launch.open_stack`), removed on every exit path.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import time
from collections.abc import Callable
from typing import Any

from ... import scenario
from ...console import EXIT_FAIL, EXIT_PASS
from ...infra import inspect, redis_cluster
from ...infra.images import ImageSet
from ...infra.launch import open_stack
from ...infra.render import for_replicas, render_nginx
from ...infra.running import RunningStack
from ...infra.sizing import BACKLOG
from ...infra.stack import StackSpec, http_get
from ...scenario import Balance, Broker
from ...spec import broker_options, new_run_id, plan
from ..common import BenchParser, Started, started
from .load import LoadGroup, cpu_share, cpu_snapshot, host_figures, proxy_figures
from .plan import (
    CONNTRACK_PER_CONNECTION,
    Layout,
    PlanError,
    Via,
    assign,
    merge,
    nearest_limits,
    per_connection_bytes,
)
from .ramp import Ramp, achieved, clean_rate, combine, parse_ramp
from .report import bound, broadcast_totals, fmt, summary, usage, write
from .setup import BROKERS, MAX_ROOMS, Setup, layout_for, parse_rounds, parse_setup
from .tracking import conntrack_room

ROOM = "lobby"
DEFAULT_N = 20_000
#: nginx's upstream connect timeout: above the first SYN retransmission (1 s), so that a SYN dropped by a
#: busy replica's backlog is retried instead of failing the client with a 502
CONNECT_TIMEOUT_MS = 5000
HEALTH_TIMEOUT_S = 10.0
#: seconds the connections are held idle before the broadcasts: past the replicas' 20 s keepalive interval,
#: so every connection is pinged at least once while the CPU is measured
HOLD_S = 30.0


def nginx_config(layout: Layout, balance: Balance = Balance.ROUND_ROBIN, *,
                 connect_timeout_ms: int = CONNECT_TIMEOUT_MS, max_fails: int = 0) -> str:
    """The lab's nginx for `layout`: its workers, their open files and connections, one listen port per
    published port, reuseport and the lab's backlog, no access log, how long it tries a replica before
    the next one, and after how many failed tries it leaves one out for 10 s (0: never, the lab's)."""
    config = dataclasses.replace(
        for_replicas(layout.replicas, balance=balance), workers=layout.nginx_workers,
        worker_connections=layout.worker_connections, worker_rlimit_nofile=layout.fd_limit,
        extra_listen_ports=layout.listen_ports[1:], reuseport=True, access_log=False,
        connect_timeout_ms=connect_timeout_ms, backlog=BACKLOG, max_fails=max_fails)
    return render_nginx(config)


def entrance(stack: RunningStack, layout: Layout) -> tuple[str, list[int]]:
    """Where the load processes connect: 127.0.0.1 and the published ports, or nginx's address on the
    front network and its listen ports."""
    if layout.via is Via.PUBLISHED:
        return "127.0.0.1", [stack.ports[port] for port in layout.listen_ports]
    return str(ipaddress.ip_address(inspect.address(stack, "nginx", "front"))), list(layout.listen_ports)


#: replica counters that explain a broadcast lost or refused (see labs/app/brokers.py)
BROKER_COUNTERS = ("published", "publish_failed", "received", "deaf_detected", "subscriber_rebuilds",
                   "delivered_frames")


def health(stack: RunningStack, name: str) -> dict[str, Any]:
    """A replica's /healthz through nginx, with a timeout for a replica busy with thousands of sockets."""
    try:
        status, body = http_get(stack.port, f"/_lab/{name}/healthz", timeout=HEALTH_TIMEOUT_S)
        return {"status": status, **(json.loads(body) if status == 200 else {})}
    except inspect.UNREACHABLE as exc:
        return {"status": None, "error": repr(exc)}


#: nginx's error-log reasons that explain a failed connection (a 502) or a dropped one
NGINX_REASONS = ("upstream timed out", "no live upstreams", "Connection refused", "Connection reset by peer",
                 "worker_connections are not enough", "Too many open files")


def nginx_reasons(log: str) -> dict[str, int]:
    """How often each known reason appears in nginx's error log."""
    return {reason: log.count(reason) for reason in NGINX_REASONS if reason in log}


def replica_figures(stack: RunningStack) -> dict[str, dict[str, Any]]:
    """Each replica's RSS, members and rooms, and broker counters, from its /healthz."""
    out = {}
    for name in stack.replica_names():
        h = health(stack, name)
        rooms = h.get("rooms", {})
        out[name] = {"rss_bytes": h.get("rss_bytes"), "members": sum(rooms.values()), "rooms": len(rooms),
                     "status": h.get("status"), **{k: h.get(k, 0) for k in BROKER_COUNTERS}}
    return out


def node_calls(stack: RunningStack, nodes: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Each broker node's PUBLISH / SPUBLISH calls so far and the microseconds Redis spent in them."""
    return {n: redis_cluster.publish_calls(redis_cluster.cli(stack.containers[n], "INFO", "commandstats"))
            for n in nodes}


def node_load(before: dict[str, dict[str, tuple[int, int]]], after: dict[str, dict[str, tuple[int, int]]],
              cpu: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per broker node over the broadcasts: publishes, microseconds per publish inside Redis (the fan-out to
    its subscribers' buffers included), and the node's share of the host's CPU."""
    out = {}
    for node, calls in after.items():
        n = sum(c for c, _ in calls.values()) - sum(c for c, _ in before.get(node, {}).values())
        usec = sum(u for _, u in calls.values()) - sum(u for _, u in before.get(node, {}).values())
        out[node] = {"publishes": n, "usec_per_publish": round(usec / n, 1) if n else None,
                     "cpu_share": cpu.get(node)}
    return out


def nginx_figures(stack: RunningStack) -> list[dict[str, int]]:
    """Open files and RSS of each nginx worker, read inside its container."""
    # nginx runs as PID 1 (the master); its workers are the other processes named nginx
    script = ("for p in /proc/[0-9]*; do [ ${p#/proc/} != 1 ] && [ \"$(cat $p/comm 2>/dev/null)\" = nginx ] && "
              "echo ${p#/proc/} $(ls $p/fd | wc -l) $(cut -d' ' -f2 $p/statm); done")
    code, out = stack.containers["nginx"].exec_run(["sh", "-c", script], user="65534:65534")
    rows = []
    for line in out.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            rows.append({"pid": int(parts[0]), "files": int(parts[1]), "rss_bytes": int(parts[2]) * 4096})
    return rows


def bench_spec(images: ImageSet, layout: Layout, setup: Setup) -> StackSpec:
    """The connection bench's own stack: the layout's replicas and nginx (its listen ports, each published
    when the load goes through docker-proxy), `setup`'s broker and policy."""
    s = scenario.load("pubsub")
    s = dataclasses.replace(s, topology=dataclasses.replace(
        s.topology, replicas=layout.replicas, broker=setup.broker, balance=setup.balance,
        cluster_masters=setup.masters))
    p = plan(s)
    return StackSpec(run_id=new_run_id(), replicas=layout.replicas, broker=setup.broker.value,
                     balancer_conf=nginx_config(layout, setup.balance), images=images, ready_timeout=60.0,
                     extra_nginx_ports=layout.listen_ports[1:] if layout.via is Via.PUBLISHED else (),
                     nofile=layout.fd_limit, backlog=p.sizing.backlog,
                     **broker_options(p.scenario, images))


def one_run(bench: Started, layout: Layout, *, broadcasts: int, collect_timeout: float, open_timeout: float,
            setup: Setup, spec: StackSpec | None = None, ramp: Ramp | None = None,
            hold_s: float = 0.0) -> dict[str, Any]:
    """One run on a fresh stack: `spec`'s (None: the bench's own, `bench_spec`), reached as `layout` says,
    its connections opened as `ramp` paces them (None: unpaced) and held idle `hold_s` seconds before the
    broadcasts (what holding them costs)."""
    client, progress = bench.client, bench.progress
    ramp = ramp or Ramp(rate=None)
    windows = WindowLog(layout.load_processes, progress)
    spec = spec or bench_spec(bench.images, layout, setup)
    host_before = host_figures()
    progress(f"run {spec.run_id}: {layout.connections} connections; {setup.describe()}")
    with open_stack(client, spec, progress=progress) as stack:
        before, nginx_before = replica_figures(stack), nginx_figures(stack)
        host, ports = entrance(stack, layout)
        replicas = stack.replica_names()
        containers = {**{n: [stack.containers[n].id] for n in replicas},
                      "nginx": [stack.containers["nginx"].id],
                      **{n: [stack.containers[n].id] for n in setup.nodes}}
        proxies = [int(p["pid"] or 0) for p in proxy_figures(ports).values()]
        with LoadGroup(assign(layout), host=host, ports=ports, room=ROOM, open_timeout=open_timeout,
                       concurrency=layout.concurrency, rooms=setup.rooms, ramp=ramp, on_window=windows.add) as load:
            progress(f"{layout.load_processes} load process(es) opening {layout.connections} connections to "
                     f"{host} on {layout.ports} port(s) ({layout.via.value}), {ramp.describe()}")
            groups = {"load processes": [p.pid for p in load.procs], **({"docker-proxy": proxies} if proxies else {})}
            cpu = [cpu_snapshot(groups, containers)]
            # every attempt ends within open_timeout (twice: the TCP and WebSocket handshake, then the welcome)
            attempts = -(-layout.per("load") // layout.concurrency)
            pace = ramp.per_process(layout.load_processes).rate
            paced = 2 * layout.per("load") / pace if pace else 0.0
            if ramp.limit_s is not None:
                paced = min(paced, ramp.limit_s + 2 * open_timeout)
            connected = load.wait_connected(deadline_s=max(2 * open_timeout * attempts, paced) + 60)
            cpu.append(cpu_snapshot(groups, containers))
            loadavg = {"connected": host_figures()["loadavg"]}
            ok = sum(c["ok"] for c in connected)
            span = max(c["finished"] for c in connected) - min(c["started"] for c in connected)
            untried = sum(c.get("untried", 0) for c in connected)
            stopped = sorted({c["stopped"] for c in connected if c.get("stopped")})
            progress(f"connected {ok}/{layout.connections} in {span:.1f}s ({ok / span:.0f}/s)"
                     + (f"; the ramp stopped with {untried:,} untried: {'; '.join(stopped)}" if untried else ""))
            after = replica_figures(stack)
            held = {"nginx": nginx_figures(stack), "proxies": proxy_figures(ports), "host": host_figures(),
                    "load": load.stats()}
            cpu.append(cpu_snapshot(groups, containers))
            if hold_s > 0:
                progress(f"holding {ok} idle connections {hold_s:g} s (keepalive pings only)")
                time.sleep(hold_s)  # a measuring window: the CPU that idle connections cost, not a readiness wait
            cpu.append(cpu_snapshot(groups, containers))
            loadavg["held"] = host_figures()["loadavg"]
            open_after_hold = sum(p["open"] for p in load.stats())
            calls = [node_calls(stack, setup.nodes)]
            rounds, began = [], time.monotonic()
            for k in range(1, broadcasts + 1):
                r = load.broadcast(f"b{k}", timeout=collect_timeout)
                rounds.append(r)
                progress(f"round {r['id']}: {r['messages']} message(s), {r['received']}/{r['expected']} "
                         f"received, 50% in {fmt(r['p50_s'], '{:.2f} s')}, 95% in {fmt(r['t95_s'], '{:.2f} s')}, "
                         f"100% in {fmt(r['t100_s'], '{:.2f} s')}, lost {r['lost']}")
            ended = time.monotonic()
            cpu.append(cpu_snapshot(groups, containers))
            loadavg["broadcasts"] = host_figures()["loadavg"]
            calls.append(node_calls(stack, setup.nodes))
            counters = replica_figures(stack)
    memory = {}
    for name, a in after.items():
        b, n = before[name]["rss_bytes"], a["members"]
        memory[name] = {"members": n, "rooms": a["rooms"], "rss_before": b, "rss_after": a["rss_bytes"],
                        "bytes_per_connection": (a["rss_bytes"] - b) / n if n and b and a["rss_bytes"] else None}
    share = {"connect": cpu_share(cpu[0], cpu[1]), "hold": cpu_share(cpu[2], cpu[3]),
             "broadcasts": cpu_share(cpu[3], cpu[4])}
    rows = combine([c.get("ramp", []) for c in connected])
    return {"connections": layout.connections, "connected": ok, "failed": layout.connections - ok,
            "setup": {"broker": setup.broker.value, "balance": setup.balance.value, "rooms": setup.rooms,
                      "masters": setup.masters if setup.broker.cluster else None, "replicas": layout.replicas},
            "connect_s": span, "connect_rate": ok / span if span > 0 else None,
            "ramp": {"mode": dataclasses.asdict(ramp), "windows": rows, "clean_rate": clean_rate(rows),
                     "achieved_rate": achieved(rows), "untried": untried, "stopped": stopped},
            "hold_s": hold_s, "open_after_hold": open_after_hold, "loadavg": loadavg,
            "memory": memory_figures(nginx_before, held, ok),
            "connect_errors": merge([c["errors"] for c in connected]),
            "replicas": memory, "broadcasts": rounds, "held": held, "host_before": host_before,
            "cpu_share": share, "broadcast_s": round(ended - began, 3),
            "nodes": node_load(calls[0], calls[1], share["broadcasts"]),
            "replica_counters": {n: {k: c[k] for k in BROKER_COUNTERS} for n, c in counters.items()},
            "nginx_errors": nginx_reasons(stack.logs.get("nginx", "")),
            "closed_while_held": closed_since(merge([c.get("closed", {}) for c in connected]),
                                              rounds[-1]["closed_connections"] if rounds else {}),
            **broadcast_totals(rounds),
            "up_s": stack.timings.up_s, "down_s": stack.timings.down_s}


class WindowLog:
    """The ramp's windows as the load processes report them; a progress line once each window is in from
    every process (the whole group's rate, what it opened and lost, the slowest median handshake)."""

    def __init__(self, processes: int, progress: Callable[[str], None]) -> None:
        self.processes, self.progress = processes, progress
        self.rows: dict[int, list[dict[str, Any]]] = {}
        self.opened = 0

    def add(self, k: int, row: dict[str, Any]) -> None:
        mine = self.rows.setdefault(k, [])
        mine.append(row)
        n = len(mine)
        if all(len(r) >= n for r in self.rows.values()) and len(self.rows) == self.processes:
            [w] = combine([[r[n - 1]] for r in self.rows.values()])
            self.opened += w["opened"]
            self.progress(f"ramp {w['t_s']:.0f} s: {w['rate']:,.0f}/s, opened {w['opened']:,} (held {self.opened:,} "
                          f"so far), failed {w['failed']}, closed {w['closed']}, median handshake "
                          f"{fmt(w['median_s'], '{:.2f} s')}")


def memory_figures(nginx_before: list[dict[str, int]], held: dict[str, Any], connections: int) -> dict[str, Any]:
    """Resident memory per held connection of nginx (all workers, the delta over the connections) and of the
    load processes (their whole RSS: a Python client's connections are nearly all of it)."""
    nginx = sum(w["rss_bytes"] for w in held["nginx"]) - sum(w["rss_bytes"] for w in nginx_before)
    load = sum(p.get("rss_bytes") or 0 for p in held["load"])
    return {"nginx_rss_before": sum(w["rss_bytes"] for w in nginx_before), "nginx_rss_after": nginx + sum(
                w["rss_bytes"] for w in nginx_before),
            "nginx_bytes_per_connection": per_connection_bytes(0, nginx, connections) if nginx_before else None,
            "load_rss": load, "load_bytes_per_connection": per_connection_bytes(0, load, connections) if load else None}


def closed_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Connections closed between two counts by close code (a load process counts them from its start)."""
    return {code: n - before.get(code, 0) for code, n in after.items() if n > before.get(code, 0)}


def run_setup(bench: Started, layout: Layout, setup: Setup, *, runs: int, broadcasts: int, collect_timeout: float,
              open_timeout: float, spec: Callable[[], StackSpec] | None = None, ramp: Ramp | None = None,
              hold_s: float = 0.0) -> list[dict[str, Any]]:
    """`runs` runs of `setup`, each on a fresh stack (`spec()`'s, or the bench's own) with room in the
    host's conntrack table (`tracking.conntrack_room`)."""
    out = []
    for i in range(runs):
        # the entries of closed connections (an earlier run's, anyone's) linger for a while
        with conntrack_room(CONNTRACK_PER_CONNECTION[layout.via] * layout.connections, progress=bench.progress):
            out.append(one_run(bench, layout, broadcasts=broadcasts, collect_timeout=collect_timeout,
                               open_timeout=open_timeout, setup=setup, spec=spec() if spec else None,
                               ramp=ramp, hold_s=hold_s))
        bench.progress(f"{setup.describe()}: run {i + 1}/{runs} done")
    return out


def add_arguments(parser: BenchParser) -> None:
    """What connections and partitioning share: N, rounds, the way in, the timeouts, the replicas."""
    parser.add_argument("--broadcasts", default="5", help="rounds per run (default 5)")
    parser.add_argument("--collect-timeout", type=float, default=60.0, help="seconds a round may take")
    parser.add_argument("--open-timeout", type=float, default=30.0, help="seconds one connection may take")
    parser.add_argument("--rate", default="off", help="connections opened per second over all load processes: a "
                        "number, auto (start at 100/s, step up while nothing fails) or off (unpaced; the default)")


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__)
    p.add_argument("--connections", "-n", default=str(DEFAULT_N), help=f"N (default {DEFAULT_N})")
    p.add_argument("--runs", default="1", help="whole runs, each on a fresh stack (default 1)")
    p.add_argument("--via", default=Via.PUBLISHED.value, help="published (127.0.0.1, through docker-proxy; "
                   "the default) or bridge (nginx's front-network address)")
    p.add_argument("--rooms", default="1", help=f"rooms the connections spread over (1..{MAX_ROOMS}, default 1)")
    p.add_argument("--broker", default=Broker.REDIS_PUBSUB.value,
                   help=f"{' | '.join(b.value for b in BROKERS)} (default redis-pubsub)")
    p.add_argument("--masters", default="3", help="a Redis Cluster's masters (default 3)")
    p.add_argument("--balance", default=Balance.ROUND_ROBIN.value,
                   help="round-robin (default) or room (nginx hashes the room: partitioning by room)")
    p.add_argument("--replicas", default="0", help="at least this many replicas (default: as N needs)")
    p.add_argument("--hold", type=float, default=HOLD_S, help=f"seconds the connections are held idle before the "
                   f"broadcasts, to measure what holding them costs (default {HOLD_S:g})")
    add_arguments(p)
    p.add_argument("--ramp-limit", type=float, default=None, help="seconds after which no more connections are "
                   "opened; the run goes on with those held (default: none)")
    p.set_defaults(rate="auto")
    return p


def held(summary: dict[str, Any]) -> bool:
    """Every connection opened and stayed open, every round acknowledged and delivered once to every other
    member."""
    return bool(summary["connected"] == summary["connections"] and summary["lost"] == 0
                and summary["duplicated"] == 0 and summary["acked"] > 0 and not summary.get("closed_while_held"))


def run(args: argparse.Namespace) -> int:
    runs_n, broadcasts = parse_rounds(args.runs, args.broadcasts)
    setup = parse_setup(args.broker, args.balance, args.rooms, args.masters)
    layout = layout_for(args.connections, args.via, args.replicas, setup.rooms)
    ramp = parse_ramp(args.rate)
    if not 0 <= args.hold <= 600:
        raise PlanError(f"--hold {args.hold:g}: give 0..600 seconds")
    if args.ramp_limit is not None:
        if not 10 <= args.ramp_limit <= 3600 or ramp.rate is None:
            raise PlanError(f"--ramp-limit {args.ramp_limit:g}: give 10..3600 seconds, with a paced --rate")
        ramp = dataclasses.replace(ramp, limit_s=args.ramp_limit)
    with started("connections") as bench:
        runs = run_setup(bench, layout, setup, runs=runs_n, broadcasts=broadcasts,
                         collect_timeout=args.collect_timeout, open_timeout=args.open_timeout, ramp=ramp,
                         hold_s=args.hold)
        machine = bench.machine()
        out = bench.folder()
    limits = max((nearest_limits(usage(r, layout)) for r in runs), key=lambda ls: ls[0][1])
    result: dict[str, Any] = {"benchmark": "connections", "runs": runs_n, "broadcasts": broadcasts,
        "setup": {**runs[0]["setup"], "text": setup.describe()},
        "layout": {**dataclasses.asdict(layout), "via": layout.via.value, "listen_ports": list(layout.listen_ports)},
        "summary": summary(runs), "limits": limits, "bound": bound(runs, limits), "results": runs,
        "machine": machine}
    write(result, out)
    print((out / "connections.md").read_text())
    print(f"-> {out}")
    return EXIT_PASS if held(result["summary"]) else EXIT_FAIL
