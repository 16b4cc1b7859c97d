"""The results table's cells for a Redis Cluster run, and the line under the table that compares the bus
bytes per message of classic PUBLISH and sharded Pub/Sub."""

from __future__ import annotations

import math
import os
from typing import Any

from ..accounting.cluster import bus_bytes, resubscribe_times
from ..scenario import Broker
from .base import Outcome
from .cells import latency, pct


def per_message(total: int | None, sent: int) -> str:
    return "-" if total is None or not sent else f"{total / sent:,.0f}"


def node_load(nodes: dict[str, Any]) -> str:
    """`redis-1 0.42s 1.2MB, ...`: each node's CPU seconds and bus + client bytes over the window."""
    def one(name: str, n: dict[str, Any]) -> str:
        moved = n["bus_tx"] + n["bus_rx"] + n["back_tx"] + n["back_rx"]
        cpu = "?" if n.get("cpu_s") is None else f"{n['cpu_s']:.2f}s"
        return f"{name}{'' if n.get('role') == 'master' else ' (r)'} {cpu} {moved / 1e6:.1f}MB"
    return ", ".join(one(name, n) for name, n in sorted(nodes.items(), key=lambda kv: int(kv[0].split("-")[1])))


def rooms(n: int) -> str:
    return f"{n} room" if n == 1 else f"{n} rooms"


def cluster_columns(outcome: Outcome) -> dict[str, str]:
    a, s, h = outcome.accounting, outcome.scenario, outcome.history
    top, wl = s.topology, s.workload
    probe = h.probes.get("cluster", {})
    nodes = probe.get("nodes", {})
    client = sum(n["back_tx"] + n["back_rx"] for n in nodes.values()) if nodes else None
    times = resubscribe_times(h)
    return {
        "broker": top.broker.value,
        "nodes": f"{top.cluster_masters}+{top.cluster_masters * top.cluster_replicas}",
        "rooms": str(wl.rooms), "clients": str(wl.clients), "fault": ", ".join(f"{f.kind.value} {f.target}"
                                                                                for f in s.faults) or "-",
        "msgs sent": str(a.sent), "expected deliveries": str(a.expected), "delivered": str(a.delivered),
        "lost": str(a.lost), "dup": str(a.duplicated), "nacked": str(a.nacked),
        "cross-server delivered": pct(a.cross_delivered, a.cross_expected),
        "bus bytes/msg": per_message(bus_bytes(h), a.sent),
        "client bytes/msg": per_message(client, a.sent),
        "node CPU s, bytes": node_load(nodes) if nodes else "-",
        "resubscribe max s": "-" if not times else ("never" if math.isinf(max(times)) else f"{max(times):.2f}"),
        "p50 / p99 ms": latency(a),
    }


def bytes_notes(outcomes: list[Outcome]) -> list[str]:
    """`sharded bus bytes/msg 120 = 0.03x classic PUBLISH's 4,300 (...)` for each pair of fault-free
    cluster runs with the same rooms and clients, one of each broker."""
    lines = []
    calm = [o for o in outcomes if not o.scenario.faults and bus_bytes(o.history) is not None and o.accounting.sent]
    for classic in (o for o in calm if o.scenario.topology.broker is Broker.REDIS_CLUSTER_PUBSUB):
        for sharded in (o for o in calm if o.scenario.topology.broker is Broker.REDIS_CLUSTER_SHARDED):
            if (classic.scenario.workload.rooms, classic.scenario.workload.clients) != \
                    (sharded.scenario.workload.rooms, sharded.scenario.workload.clients):
                continue
            c = (bus_bytes(classic.history) or 0) / classic.accounting.sent
            sh = (bus_bytes(sharded.history) or 0) / sharded.accounting.sent
            ratio = f"{sh / c:.2f}x" if c else "n/a"
            lines.append(f"{sharded.scenario.name} bus bytes/msg {sh:,.0f} = {ratio} {classic.scenario.name}'s "
                         f"{c:,.0f} ({rooms(classic.scenario.workload.rooms)}; bus bytes include the nodes' gossip; "
                         f"host load average {os.getloadavg()[0]:.1f})")
            break
    return lines
