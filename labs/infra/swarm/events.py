"""What Swarm says while a run goes, as it changes: each node's state and availability, each task's state
and node, stamped with the host's monotonic clock (the workload's and the faults' clock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import docker.errors

from ..stack import TRANSIENT
from .nodes import Swarm, node_client


def watch(swarm: Swarm, services: Callable[[], dict[str, Any]], events: list[tuple[float, str]],
          stopping: threading.Event, interval: float = 0.2) -> None:
    """Append (time, "what: state") to `events` for every change, until `stopping` is set (nodes by the
    names scenarios give them). Runs in its own thread, on its own connection to the manager."""
    names = {n.swarm_name: n.name for n in swarm.nodes}
    with closing(node_client(swarm.manager)) as client:
        ids = {n.id: names.get(n.attrs["Description"]["Hostname"], n.attrs["Description"]["Hostname"])
               for n in client.nodes.list()}
        seen: dict[str, str] = {}
        while not stopping.wait(interval):
            try:
                now = _states(client, ids, {s.id: name for name, s in list(services().items())})
            except (docker.errors.APIError, *TRANSIENT):
                continue
            stamp = time.monotonic()
            events.extend((stamp, f"{key}: {value}") for key, value in now.items() if seen.get(key) != value)
            seen = now


def _states(client: docker.DockerClient, ids: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    now: dict[str, str] = {}
    for n in client.nodes.list():
        now[ids.get(n.id, n.id[:6])] = f"{n.attrs['Status']['State']}/{n.attrs['Spec']['Availability']}"
    for t in client.api.tasks():
        if t["ServiceID"] in names:
            now[f"{names[t['ServiceID']]} task {t['ID'][:6]}"] = \
                f"{t['Status']['State']} on {ids.get(t.get('NodeID', ''), '?')}"
    return now
