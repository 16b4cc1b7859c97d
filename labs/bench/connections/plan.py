"""How the connection bench lays out N WebSocket connections, and what a broadcast's arrival times say.
Pure: no sockets, no Docker; `bench_connections` runs what `plan_layout` decides.

How many nginx workers and replicas carry N under the host's per-process open-file limit, and the limits
they get, is `labs.infra.sizing`: every stack is sized there. What the bench adds is the load side: enough
load processes, and the way in. A port published on 127.0.0.1 goes through one docker-proxy, which holds 6
files per connection (~2,500 connections a port within the headroom), so the layout publishes many, each
its own docker-proxy and nginx listen port with its own ~28k ephemeral source ports. The other way in
(`Via.BRIDGE`) skips docker-proxy: the host connects to nginx's address on the lab's front network, where
each nginx listen port gives the host's bridge address its own ~28k ephemeral source ports.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ...errors import LabError
from ...infra.sizing import (
    HEADROOM,
    MAX_FILES,
    MAX_REPLICAS,
    MAX_WORKERS,
    Sizing,
    capacity,
    replicas_for,
    size_stack,
)

#: the ports nginx listens on inside its container: 8080 (the lab's usual one), then 8081, 8082, ...
FIRST_LISTEN_PORT = 8080
#: bounds of what the lab publishes
MAX_PORTS = 64


class Via(enum.Enum):
    """How the load processes reach nginx: its ports published on 127.0.0.1 (through docker-proxy), or
    its address on the lab's front network (straight over the bridge)."""

    PUBLISHED = "published"
    BRIDGE = "bridge"


#: connections the host's netfilter tracks per client, each an entry in one host-wide table (measured
#: here: client -> docker-proxy on loopback, docker-proxy -> nginx and nginx -> replica across the bridge)
CONNTRACK_PER_CONNECTION = {Via.PUBLISHED: 3, Via.BRIDGE: 2}
#: at least this many replicas, so that a broadcast crosses replicas through the broker
MIN_REPLICAS = 2
#: at least one load process per core
MIN_LOAD = 2
#: connection attempts in flight per replica: each waits for its handshake in the replica's one event loop,
#: so more in flight only wait longer (and time out) instead of connecting sooner
IN_FLIGHT_PER_REPLICA = 80


E = TypeVar("E", bound=enum.Enum)


class PlanError(LabError):
    """N connections cannot be laid out under the limits given."""


def parse_choice(kind: type[E], flag: str, text: str) -> E:
    """A command-line word that must be one of an enum's values; else one line naming them."""
    try:
        return kind(text)
    except ValueError:
        raise PlanError(f"{flag} {text!r}: give one of {', '.join(str(k.value) for k in kind)}") from None


@dataclass(frozen=True)
class Layout:
    """How N connections are carried: by how many of each process, and the limits nginx is given."""

    connections: int
    fd_limit: int
    load_processes: int
    ports: int
    nginx_workers: int
    worker_connections: int
    replicas: int
    ephemeral_ports: int
    #: connection attempts each load process keeps in flight
    concurrency: int
    via: Via = Via.PUBLISHED

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """nginx's listen ports inside its container, one per published port."""
        return tuple(range(FIRST_LISTEN_PORT, FIRST_LISTEN_PORT + self.ports))

    def per(self, kind: str) -> int:
        """Connections each process of `kind` carries at most (an even spread, rounded up)."""
        count = {"load": self.load_processes, "proxy": self.ports, "nginx": self.nginx_workers,
                 "replica": self.replicas}[kind]
        return math.ceil(self.connections / count)


def plan_layout(connections: int, *, fd_limit: int = 20_000, ephemeral_ports: int = 28_232,
                conntrack_max: int | None = None, via: Via = Via.PUBLISHED, replicas: int = 0) -> Layout:
    """The fewest processes of each kind that carry `connections` within `HEADROOM` of `fd_limit`, and at
    least `replicas` replicas when more are asked for.

    Refused (PlanError, one line) when N < 1, or when it needs more nginx workers, listen ports or replicas
    than the lab starts, more connections to one destination than there are ephemeral source ports, or
    more tracked connections than the host's conntrack table holds (`conntrack_max`; None: no table).
    """
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise PlanError(f"N={connections!r}: need a whole number of connections, at least 1 (e.g. N=20000)")
    if not 1024 <= fd_limit <= 1_048_576:
        raise PlanError(f"open-file limit {fd_limit} is outside 1024..1048576")
    if not 0 <= replicas <= MAX_REPLICAS:
        raise PlanError(f"replicas {replicas}: give 0 (as many as N needs) .. {MAX_REPLICAS}")
    limit = min(fd_limit, MAX_FILES)
    proxy = proxy_capacity(via, limit, ephemeral_ports)
    most = min(MAX_PORTS * proxy, MAX_WORKERS * capacity("nginx", limit), MAX_REPLICAS * capacity("replica", limit))
    if connections > most:
        raise PlanError(f"N={connections} is more than this layout holds under a {limit}-file limit "
                        f"(at most {most}: {MAX_PORTS} ports, {MAX_WORKERS} nginx workers, {MAX_REPLICAS} "
                        f"replicas); give a smaller N")
    sizing = size_stack(max(MIN_REPLICAS, replicas, replicas_for(connections, limit)), fd_limit=limit,
                        connections=connections)
    return layout_on(sizing, ports=math.ceil(connections / proxy), via=via, ephemeral_ports=ephemeral_ports,
                     conntrack_max=conntrack_max)


def proxy_capacity(via: Via, fd_limit: int, ephemeral_ports: int) -> int:
    """Connections one way in carries: a published port's docker-proxy under `fd_limit` files, or (over the
    bridge, no docker-proxy) a listen port's ephemeral source ports."""
    return capacity("proxy", fd_limit) if via is Via.PUBLISHED else int(ephemeral_ports * HEADROOM)


def layout_on(sizing: Sizing, *, ports: int, via: Via, ephemeral_ports: int = 28_232,
              conntrack_max: int | None = None) -> Layout:
    """The load side for a stack sized by `sizing` and reached on `ports` ports: load processes for its
    `wanted` connections, and the host's checks (ephemeral source ports, conntrack); PlanError otherwise."""
    connections = sizing.wanted
    load = max(MIN_LOAD, math.ceil(connections / capacity("load", sizing.fd_limit)))
    # Each (source address, destination address, destination port) has its own ephemeral source ports:
    # load -> 127.0.0.1:published port, docker-proxy -> nginx:listen port, nginx -> replica:8000.
    busiest = max(math.ceil(connections / ports), math.ceil(connections / sizing.replicas))
    if busiest > ephemeral_ports:
        raise PlanError(f"N={connections} puts {busiest} connections on one destination, more than the "
                        f"{ephemeral_ports} ephemeral ports; give a smaller N")
    tracked = CONNTRACK_PER_CONNECTION[via] * connections
    if conntrack_max is not None and tracked > conntrack_max:
        raise PlanError(f"N={connections} needs ~{tracked} tracked connections ({via.value}) but the host's conntrack "
                        f"table holds {conntrack_max}; give a smaller N, --via bridge, or raise "
                        f"net.netfilter.nf_conntrack_max")
    return Layout(connections=connections, fd_limit=sizing.fd_limit, load_processes=load, ports=ports,
                  nginx_workers=sizing.nginx_workers, worker_connections=sizing.worker_connections,
                  replicas=sizing.replicas, ephemeral_ports=ephemeral_ports,
                  concurrency=max(1, IN_FLIGHT_PER_REPLICA * sizing.replicas // load), via=via)


def assign(layout: Layout) -> list[tuple[int, int]]:
    """Each load process's connections as (first index, count), contiguous and as even as can be.
    Connection i goes to published port i % ports, so every port gets an even share too."""
    base, extra = divmod(layout.connections, layout.load_processes)
    out, first = [], 0
    for k in range(layout.load_processes):
        count = base + (1 if k < extra else 0)
        out.append((first, count))
        first += count
    return out


def room_name(room: str, rooms: int, i: int) -> str:
    """The room connection i joins: `room` itself when there is one, else `<room>-<i mod rooms>`."""
    return room if rooms == 1 else f"{room}-{i % rooms}"


@dataclass(frozen=True)
class Arrival:
    """One broadcast: how many should have received it, and when it reached each that did."""

    expected: int
    #: seconds from the send to each receipt (one entry per receiving connection, first receipt only)
    delays: tuple[float, ...]
    duplicates: int = 0


def time_to_fraction(delays: Sequence[float], expected: int, fraction: float) -> float | None:
    """Seconds until `fraction` of the `expected` receivers had the message; None if they never did."""
    if expected < 1 or not 0 < fraction <= 1:
        raise ValueError(f"need expected >= 1 and 0 < fraction <= 1, got {expected}, {fraction}")
    needed = math.ceil(expected * fraction - 1e-9)
    if len(delays) < needed:
        return None
    return sorted(delays)[needed - 1]


def summarize(arrival: Arrival) -> dict[str, float | int | None]:
    """A broadcast's figures: received, lost, duplicated, and seconds to 50%, 95% and 100% of receivers."""
    received = len(arrival.delays)
    return {"expected": arrival.expected, "received": received, "lost": max(0, arrival.expected - received),
            "duplicated": arrival.duplicates,
            "p50_s": time_to_fraction(arrival.delays, arrival.expected, 0.5),
            "t95_s": time_to_fraction(arrival.delays, arrival.expected, 0.95),
            "t100_s": time_to_fraction(arrival.delays, arrival.expected, 1.0)}


def merge(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    """Counters by key, added up."""
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def round_figures(at: dict[str, float], answers: dict[str, str | None],
                  messages: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """A round's figures from what each load process saw: `at` when each message was sent, `answers` its
    replica's ack or nack, `messages` per process {id: {"times", "expecting", "duplicates"}}. Times and loss
    count acknowledged messages only: a nacked one was refused (its sender was told), not lost."""
    acked = {mid for mid, a in answers.items() if a == "ack"}
    expected = sum(m["expecting"] for per in messages for mid, m in per.items() if mid in acked)
    delays = tuple(t - at[mid] for per in messages for mid, m in per.items() if mid in acked for t in m["times"])
    duplicates = sum(m["duplicates"] for per in messages for m in per.values())
    figures = summarize(Arrival(expected, delays, duplicates)) if expected else {
        "expected": 0, "received": 0, "lost": 0, "duplicated": duplicates, "p50_s": None, "t95_s": None,
        "t100_s": None}
    return {"messages": len(at), "acked": len(acked), "nacked": sum(a == "nack" for a in answers.values()),
            "unanswered": sum(a is None for a in answers.values()), **figures}


def median_of(values: Sequence[float | None]) -> float | None:
    """The median of the values present; None if none is (a broadcast that never reached 95%)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def per_connection_bytes(before: int, after: int, connections: int) -> float | None:
    """Resident memory per connection: the RSS delta over the connections held; None without any."""
    return (after - before) / connections if connections > 0 else None


def nearest_limits(usage: dict[str, tuple[float, float]]) -> list[tuple[str, float]]:
    """What each part used of its limit, as (part, fraction), the nearest to its limit first.
    `usage` maps a part to (used, limit); a part with no figure (used < 0 or limit <= 0) is left out."""
    out = [(part, used / limit) for part, (used, limit) in usage.items() if used >= 0 and limit > 0]
    return sorted(out, key=lambda item: item[1], reverse=True)
