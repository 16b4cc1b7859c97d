"""Horizontal partitioning at scale (a benchmark, not a test): `python -m labs.bench partitioning`
(`make bench-partitioning`).

The article's advice past ~100k connections is a Redis Cluster and horizontal partitioning. This bench holds
N connections (default 20,000) in R rooms (default 200; connection i joins room i mod R) over more replicas
(default 4), and runs the connection bench's rounds (one message into every room at once) on each setup:

  redis-pubsub / round-robin           one Redis; every replica has members of every room, so every
                                       replica subscribes to every room and hears every message
  redis-pubsub / room                  one Redis; nginx hashes the room (`balance = "room"`): a room's
                                       members share a replica, which alone subscribes to it
  redis-cluster-sharded / round-robin  3 masters, sharded Pub/Sub: the rooms spread over the shards
  redis-cluster-sharded / room         both
  redis-cluster-pubsub / round-robin   3 masters, classic PUBLISH: every node carries every message
  none / room                          partitioning alone: no broker at all

For each: how long a round took to reach 50%, 95% and 100% of its receivers, loss, and the load per node
while the rounds ran (each replica's connections, rooms and CPU; each Redis node's publishes, time inside
Redis per publish and CPU). Writes results/bench/partitioning-<stamp>/partitioning.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..console import EXIT_FAIL, EXIT_PASS
from .common import BenchParser, started
from .connections.plan import PlanError, median_of
from .connections.ramp import parse_ramp
from .connections.report import broadcast_totals, fmt, per_node
from .connections.run import add_arguments, held, run_setup
from .connections.setup import Setup, layout_for, parse_rounds, parse_setup

SETUPS = ("redis-pubsub:round-robin", "redis-pubsub:room", "redis-cluster-sharded:round-robin",
          "redis-cluster-sharded:room", "redis-cluster-pubsub:round-robin", "none:room")


def parse_setups(text: str, rooms: str, masters: str) -> list[Setup]:
    """`broker:balance,…` as Setups; PlanError (one line) for a word that is not one."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        broker, sep, balance = item.partition(":")
        if not sep:
            raise PlanError(f"--setups {item!r}: give broker:balance, e.g. redis-pubsub:room")
        out.append(parse_setup(broker, balance, rooms, masters))
    if len(set(out)) != len(out):
        raise PlanError(f"--setups {text!r} names a setup twice")
    return out


def row(setup: Setup, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One setup's figures over its runs: medians of the rounds' times, loss totals, load per node."""
    nodes = per_node(runs)
    replicas = {n: v for n, v in nodes.items() if n.startswith("app-")}
    brokers = {n: v for n, v in nodes.items() if n not in replicas}
    totals = broadcast_totals([r for run in runs for r in run["broadcasts"]])
    shares = [run["cpu_share"]["broadcasts"] for run in runs]
    return {"setup": setup.describe(), "broker": setup.broker.value, "balance": setup.balance.value,
            "connections": runs[0]["connections"], "connected": min(r["connected"] for r in runs),
            **totals,
            "rooms_per_replica": median_of([v["rooms"] for v in replicas.values()]),
            "members_per_replica": [min(v["members"] or 0 for v in replicas.values()),
                                    max(v["members"] or 0 for v in replicas.values())],
            "replica_cpu": sum(v["cpu_share"] or 0 for v in replicas.values()),
            "broker_cpu": [brokers[n]["cpu_share"] for n in brokers],
            "publishes": [brokers[n]["publishes"] for n in brokers],
            "usec_per_publish": [brokers[n]["usec_per_publish"] for n in brokers],
            "host_busy": median_of([s.get("host busy") for s in shares]),
            "load_cpu": median_of([s.get("load processes") for s in shares]),
            "nginx_cpu": median_of([s.get("nginx") for s in shares]),
            "round_s": median_of([run["broadcast_s"] / max(1, len(run["broadcasts"])) for run in runs]),
            "nodes": nodes}


def _list(values: list[float | None], pattern: str) -> str:
    return " / ".join(fmt(v, pattern) for v in values) or "—"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# {result['connections']:,} connections in {result['rooms']} rooms over {result['replicas']} "
             f"replicas ({m['cpus']} cores)", "",
             f"Each setup: {result['runs']} run(s) of {result['broadcasts']} rounds (a round: one message into "
             f"every room at once, {result['rooms']} messages); times are medians over the rounds, loss totals. "
             "CPU is the share of all cores while the rounds ran (medians over runs).", "",
             "| setup | connected | connections per replica (least–most) | rooms per replica | 50% of a round "
             "| 95% | 100% | lost | replicas' CPU | broker nodes' CPU | publishes per node "
             "| µs inside Redis per publish | nginx's CPU | load processes' CPU | host busy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['setup']} | {r['connected']:,}/{r['connections']:,} "
            f"| {r['members_per_replica'][0]:,.0f}–{r['members_per_replica'][1]:,.0f} "
            f"| {fmt(r['rooms_per_replica'], '{:.0f}')} "
            f"| {fmt(r['p50_s'], '{:.2f} s')} | {fmt(r['t95_s'], '{:.2f} s')} | {fmt(r['t100_s'], '{:.2f} s')} "
            f"| {r['lost']} | {r['replica_cpu']:.0%} | {_list(r['broker_cpu'], '{:.1%}')} "
            f"| {_list(r['publishes'], '{:,.0f}')} | {_list(r['usec_per_publish'], '{:.1f}')} "
            f"| {fmt(r['nginx_cpu'], '{:.0%}')} | {fmt(r['load_cpu'], '{:.0%}')} | {fmt(r['host_busy'], '{:.0%}')} |")
    lines += ["", f"Machine: {m['platform']}, Docker {m['docker']}, Python {m['python']}.", ""]
    return "\n".join(lines)


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__)
    p.add_argument("--connections", "-n", default="20000", help="N (default 20000)")
    p.add_argument("--rooms", default="200", help="rooms (default 200)")
    p.add_argument("--replicas", default="4", help="replicas, at least (default 4)")
    p.add_argument("--masters", default="3", help="a Redis Cluster's masters (default 3)")
    p.add_argument("--runs", default="3", help="runs per setup, each on a fresh stack (default 3)")
    p.add_argument("--setups", default=",".join(SETUPS), help="broker:balance,… (default: all six)")
    p.add_argument("--via", default="bridge", help="bridge (default) or published")
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    runs_n, broadcasts = parse_rounds(args.runs, args.broadcasts)
    setups = parse_setups(args.setups, args.rooms, args.masters)
    layout = layout_for(args.connections, args.via, args.replicas, setups[0].rooms)
    ramp = parse_ramp(args.rate)
    rows, results = [], {}
    with started("partitioning") as bench:
        for setup in setups:
            runs = run_setup(bench, layout, setup, runs=runs_n, broadcasts=broadcasts,
                             collect_timeout=args.collect_timeout, open_timeout=args.open_timeout, ramp=ramp)
            rows.append(row(setup, runs))
            results[f"{setup.broker.value}:{setup.balance.value}"] = runs
        machine = bench.machine()
        out = bench.folder()
    result = {"benchmark": "partitioning", "connections": layout.connections, "rooms": setups[0].rooms,
              "replicas": layout.replicas, "masters": setups[0].masters, "runs": runs_n, "broadcasts": broadcasts,
              "layout": {**dataclasses.asdict(layout), "via": layout.via.value,
                         "listen_ports": list(layout.listen_ports)},
              "rows": rows, "results": results, "machine": machine}
    (out / "partitioning.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "partitioning.md").write_text(markdown(result))
    print(markdown(result))
    print(f"-> {out}")
    return EXIT_PASS if all(held(r) for r in rows) else EXIT_FAIL
