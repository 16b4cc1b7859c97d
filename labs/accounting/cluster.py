"""What a Redis Cluster run measured, from its History: bus bytes per message and the time replicas took
to resubscribe. Pure."""

from __future__ import annotations

import math

from ..scenario.expect import Metric
from .history import History

SUBSCRIBER = "subscriber"


def bus_bytes(history: History) -> int | None:
    """Bytes the nodes sent over the cluster bus during the window (each byte counted once, by its sender);
    None when the run was not metered or a node could not be read at either end."""
    probe = history.probes.get("cluster", {})
    nodes = probe.get("nodes")
    if not nodes or probe.get("unread"):
        return None
    return sum(int(n.get("bus_tx", 0)) for n in nodes.values())


def resubscribe_times(history: History) -> list[float]:
    """For each time a replica's subscriber broke: how long until it worked again (inf: never)."""
    broken: dict[str, float] = {}
    out: list[float] = []
    for e in sorted(history.broker_events, key=lambda e: e.at):
        if e.part != SUBSCRIBER:
            continue
        if not e.working:
            broken.setdefault(e.replica, e.at)
        elif e.replica in broken:
            out.append(e.at - broken.pop(e.replica))
    return out + [math.inf] * len(broken)


def cluster_measures(history: History) -> dict[Metric, float | None]:
    sent = len(history.sent)
    total = bus_bytes(history)
    times = resubscribe_times(history)
    return {
        Metric.BUS_BYTES_PER_MESSAGE: total / sent if total is not None and sent else None,
        #: no subscriber broke: there was no resubscription to time
        Metric.RESUBSCRIBE_MAX_S: max(times) if times else None,
    }
