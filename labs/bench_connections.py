"""Connection scale (a benchmark, not a test): `python -m labs.bench_connections --connections 20000`.

Opens N mostly idle WebSocket connections through the lab's nginx to Redis-PubSub replicas, all in one
room, then broadcasts from one of them a few times. Writes results/bench/connections-<stamp>/connections.json
and connections.md: the connect rate, resident memory per connection per replica (the replica's own RSS
delta over the connections it holds), the seconds until 95% and 100% of each broadcast arrived (medians),
loss, and what each kind of process used of its open-file limit, so the result says what bounds it.

`labs.connections.plan_layout` decides how many load processes, published ports (one docker-proxy each),
nginx workers and replicas carry N under the host's hard `nofile` limit. `--via bridge` reaches nginx on
its front-network address instead (no docker-proxy, nothing more published). The load processes
(`labs.connections_client`) run in their own process group, killed on every exit path; the containers
are the lab's `Stack`, removed on every exit path.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from . import scenario, settings, signals
from .cli import progress_printer
from .connections import CONNTRACK_PER_CONNECTION, Layout, PlanError, Via, assign, nearest_limits, plan_layout
from .connections_load import LoadGroup, cpu_share, cpu_snapshot, host_figures, proxy_figures
from .connections_report import broadcast_totals, bound, fmt, merge, summary, usage, write
from .errors import LabError
from .infra import inspect
from .infra.render import for_replicas, render_nginx
from .infra.stack import Stack, StackSpec, http_get
from .runner import broker_options, new_run_id, plan, utc_stamp
from .scenario import Broker

ROOM = "lobby"
DEFAULT_N = 20_000
#: nginx's upstream connect timeout: above the first SYN retransmission (1 s), so that a SYN dropped by a
#: busy replica's backlog is retried instead of failing the client with a 502
CONNECT_TIMEOUT_MS = 5000
HEALTH_TIMEOUT_S = 10.0
#: how long a run waits for the conntrack entries of the run before it to expire
CONNTRACK_WAIT_S = 180.0


def ephemeral_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    low, high = (int(v) for v in path.read_text().split())
    return high - low + 1


def conntrack(name: str, directory: Path = Path("/proc/sys/net/netfilter")) -> int | None:
    """`nf_conntrack_max` or `nf_conntrack_count` of the host's connection-tracking table; None without one."""
    try:
        return int((directory / name).read_text())
    except (OSError, ValueError):
        return None


def conntrack_free() -> int | None:
    """Free entries in the host's connection-tracking table; None when the host tracks nothing."""
    size, used = conntrack("nf_conntrack_max"), conntrack("nf_conntrack_count")
    return None if size is None or used is None else size - used


def wait_for_conntrack(needed: int, *, progress: Any, timeout: float = CONNTRACK_WAIT_S) -> None:
    """Wait until the host's conntrack table has `needed` free entries: a closed connection's entries
    linger (TIME_WAIT, 120 s), so a run right after a big one may not fit yet."""
    deadline = time.monotonic() + timeout
    free = conntrack_free()
    if free is not None and free < needed:
        progress(f"waiting for {needed} free conntrack entries ({free} now; closed connections linger 120 s)")
    while free is not None and free < needed:
        if time.monotonic() > deadline:
            raise PlanError(f"the host's conntrack table still has only {free} free entries after {timeout:.0f}s, "
                            f"{needed} needed; give a smaller N or raise net.netfilter.nf_conntrack_max")
        time.sleep(1.0)
        free = conntrack_free()


def nginx_config(layout: Layout) -> str:
    """The lab's nginx for `layout`: its workers, their open files and connections, one listen port per
    published port, reuseport, no access log."""
    config = dataclasses.replace(
        for_replicas(layout.replicas), workers=layout.nginx_workers, worker_connections=layout.worker_connections,
        worker_rlimit_nofile=layout.fd_limit, extra_listen_ports=layout.listen_ports[1:], reuseport=True,
        access_log=False, connect_timeout_ms=CONNECT_TIMEOUT_MS)
    return render_nginx(config)


def entrance(stack: Stack, layout: Layout) -> tuple[str, list[int]]:
    """Where the load processes connect: 127.0.0.1 and the published ports, or nginx's address on the
    front network and its listen ports."""
    if layout.via is Via.PUBLISHED:
        return "127.0.0.1", [stack.ports[port] for port in layout.listen_ports]
    nginx = stack.containers["nginx"]
    nginx.reload()
    address = nginx.attrs["NetworkSettings"]["Networks"][stack.networks["front"].name]["IPAddress"]
    return str(ipaddress.ip_address(address)), list(layout.listen_ports)


#: replica counters that explain a broadcast lost or refused (see labs/app/brokers.py)
BROKER_COUNTERS = ("published", "publish_failed", "received", "deaf_detected", "subscriber_rebuilds",
                   "delivered_frames")


def health(stack: Stack, name: str) -> dict[str, Any]:
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


def replica_figures(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each replica's RSS, members of the room and broker counters, from its /healthz."""
    out = {}
    for name in stack.replica_names():
        h = health(stack, name)
        out[name] = {"rss_bytes": h.get("rss_bytes"), "members": h.get("rooms", {}).get(ROOM, 0),
                     "status": h.get("status"), **{k: h.get(k, 0) for k in BROKER_COUNTERS}}
    return out


def nginx_figures(stack: Stack) -> list[dict[str, int]]:
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


def one_run(client: Any, images: Any, layout: Layout, *, broadcasts: int, collect_timeout: float,
            open_timeout: float, progress: Any) -> dict[str, Any]:
    s = scenario.load("pubsub")
    s = dataclasses.replace(s, topology=dataclasses.replace(s.topology, replicas=layout.replicas,
                                                            broker=Broker.REDIS_PUBSUB))
    p = plan(s)
    spec = StackSpec(run_id=new_run_id(), replicas=layout.replicas, broker=Broker.REDIS_PUBSUB.value,
                     nginx_conf=nginx_config(layout), images=images, ready_timeout=60.0,
                     extra_nginx_ports=layout.listen_ports[1:] if layout.via is Via.PUBLISHED else (),
                     nofile=layout.fd_limit,
                     **broker_options(p.scenario))
    host_before = host_figures()
    progress(f"run {spec.run_id}: {layout.connections} connections")
    with Stack(client, spec, progress=progress) as stack:
        before = replica_figures(stack)
        host, ports = entrance(stack, layout)
        containers = {"replicas": [stack.containers[n].id for n in stack.replica_names()],
                      "nginx": [stack.containers["nginx"].id], "redis": [stack.containers["redis"].id]}
        proxies = [int(p["pid"] or 0) for p in proxy_figures(ports).values()]
        with LoadGroup(assign(layout), host=host, ports=ports, room=ROOM, open_timeout=open_timeout,
                       concurrency=layout.concurrency) as load:
            progress(f"{layout.load_processes} load process(es) opening {layout.connections} connections to "
                     f"{host} on {layout.ports} port(s) ({layout.via.value})")
            groups = {"load processes": [p.pid for p in load.procs], "docker-proxy": proxies}
            cpu = [cpu_snapshot(groups, containers)]
            # every attempt ends within open_timeout (twice: the TCP and WebSocket handshake, then the welcome)
            attempts = -(-layout.per("load") // layout.concurrency)
            connected = load.wait_connected(deadline_s=2 * open_timeout * attempts + 60)
            cpu.append(cpu_snapshot(groups, containers))
            ok = sum(c["ok"] for c in connected)
            span = max(c["finished"] for c in connected) - min(c["started"] for c in connected)
            progress(f"connected {ok}/{layout.connections} in {span:.1f}s ({ok / span:.0f}/s)")
            after = replica_figures(stack)
            held = {"nginx": nginx_figures(stack), "proxies": proxy_figures(ports), "host": host_figures(),
                    "load": load.stats()}
            cpu.append(cpu_snapshot(groups, containers))
            rounds = []
            for k in range(1, broadcasts + 1):
                r = load.broadcast(f"b{k}", expected=ok - 1, timeout=collect_timeout)
                rounds.append(r)
                progress(f"broadcast {r['id']}: {r['received']}/{r['expected']} received, 95% in "
                         f"{fmt(r['t95_s'], '{:.2f} s')}, 100% in {fmt(r['t100_s'], '{:.2f} s')}, lost {r['lost']}")
            cpu.append(cpu_snapshot(groups, containers))
            counters = replica_figures(stack)
    memory = {}
    for name, a in after.items():
        b, n = before[name]["rss_bytes"], a["members"]
        memory[name] = {"members": n, "rss_before": b, "rss_after": a["rss_bytes"],
                        "bytes_per_connection": (a["rss_bytes"] - b) / n if n and b and a["rss_bytes"] else None}
    return {"connections": layout.connections, "connected": ok, "failed": layout.connections - ok,
            "connect_s": span, "connect_rate": ok / span if span > 0 else None,
            "connect_errors": merge([c["errors"] for c in connected]),
            "replicas": memory, "broadcasts": rounds, "held": held, "host_before": host_before,
            "cpu_share": {"connect": cpu_share(cpu[0], cpu[1]), "broadcasts": cpu_share(cpu[2], cpu[3])},
            "replica_counters": {n: {k: c[k] for k in BROKER_COUNTERS} for n, c in counters.items()},
            "nginx_errors": nginx_reasons(stack.logs.get("nginx", "")),
            **broadcast_totals(rounds),
            "up_s": stack.timings.up_s, "down_s": stack.timings.down_s}


def parse_count(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise PlanError(f"N={text!r} is not a whole number; give e.g. N=20000") from None


def parse_via(text: str) -> Via:
    try:
        return Via(text)
    except ValueError:
        raise PlanError(f"--via {text!r}: give one of {', '.join(v.value for v in Via)}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs.bench_connections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", "-n", default=str(DEFAULT_N), help=f"N (default {DEFAULT_N})")
    parser.add_argument("--runs", default="1", help="whole runs, each on a fresh stack (default 1)")
    parser.add_argument("--broadcasts", default="5", help="broadcasts per run (default 5)")
    parser.add_argument("--via", default=Via.PUBLISHED.value, help="published (127.0.0.1, through docker-proxy; "
                        "the default) or bridge (nginx's front-network address)")
    parser.add_argument("--collect-timeout", type=float, default=60.0, help="seconds a broadcast may take")
    parser.add_argument("--open-timeout", type=float, default=30.0, help="seconds one connection may take")
    args = parser.parse_args(argv)
    signals.install()
    progress = progress_printer(settings.QUIET)
    try:
        runs_n, broadcasts = parse_count(args.runs), parse_count(args.broadcasts)
        if not 1 <= runs_n <= 20 or not 1 <= broadcasts <= 50:
            raise PlanError(f"runs {runs_n} and broadcasts {broadcasts} must be 1..20 and 1..50")
        via = parse_via(args.via)
        layout = plan_layout(parse_count(args.connections), fd_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                             ephemeral_ports=ephemeral_ports(), conntrack_max=conntrack("nf_conntrack_max"), via=via)
    except LabError as exc:
        print(f"bench-connections: {exc}", file=sys.stderr)
        return 2
    from .infra.engine import ensure_engine
    from .infra.images import ensure_images

    client = ensure_engine(progress=progress)
    try:
        images = ensure_images(client, progress=progress)
        runs = []
        for i in range(runs_n):
            # the entries of closed connections (an earlier run's, anyone's) linger for a while
            wait_for_conntrack(CONNTRACK_PER_CONNECTION[layout.via] * layout.connections, progress=progress)
            runs.append(one_run(client, images, layout, broadcasts=broadcasts, collect_timeout=args.collect_timeout,
                                open_timeout=args.open_timeout, progress=progress))
            progress(f"run {i + 1}/{runs_n} done")
        engine = client.version().get("Version", "?")
    finally:
        client.close()
    limits = max((nearest_limits(usage(r, layout)) for r in runs), key=lambda ls: ls[0][1])
    result: dict[str, Any] = {"benchmark": "connections", "runs": runs_n, "broadcasts": broadcasts,
        "layout": {**dataclasses.asdict(layout), "via": layout.via.value, "listen_ports": list(layout.listen_ports)},
        "summary": summary(runs), "limits": limits, "bound": bound(runs, limits), "results": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "docker": engine,
                    "python": platform.python_version()}}
    out = settings.RESULTS_DIR / "bench" / f"connections-{utc_stamp()}"
    write(result, out)
    print((out / "connections.md").read_text())
    print(f"-> {out}")
    s = result["summary"]
    return 0 if (s["connected"] == s["connections"] and s["lost"] == 0 and s["duplicated"] == 0
                 and s["acked"] > 0) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the load processes and the stack were removed on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except LabError as exc:
        print(f"bench-connections: {exc}", file=sys.stderr)
        sys.exit(1)
