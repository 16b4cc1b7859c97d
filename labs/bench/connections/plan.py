"""How to hold N WebSocket connections under a per-process open-file limit, and what a broadcast's arrival
times say. Pure: no sockets, no Docker; `bench_connections` runs what `plan_layout` decides.

Every process on the path holds files for each connection it carries, and none may hold more than the
host's hard `nofile` limit (20,000 here, root included, containers too):

  load process  -> docker-proxy (one per published port) -> nginx worker -> replica
  1 per client     6 per client                               2 per client     1 per client

docker-proxy (the userland proxy through which the host reaches a port published on 127.0.0.1) holds its
two sockets and, measured here, two pipes (four files) per connection: Go's splice keeps a pipe per
direction while it waits for data. So a published port carries ~3,300 connections at most, and the
layout publishes many. The other way in (`Via.BRIDGE`) skips docker-proxy: the host connects to nginx's
address on the lab's front network, where each nginx listen port gives the host's bridge address its own
~28k ephemeral source ports; nothing more is published.

So the layout spreads the connections over enough load processes, published ports (each its own
docker-proxy and its own nginx listen port, and each its own ~28k ephemeral source ports), nginx workers
(`listen ... reuseport`: the kernel spreads connections over them) and replicas, each kept to a share of
the limit (`HEADROOM`) because spreading by hash or round robin is never exact.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import LabError

#: the fraction of the open-file limit a process is planned to use (the rest: spread, listeners, logs)
HEADROOM = 0.75
#: files per connection in each kind of process (docker-proxy: measured 6.1 at 2,000 connections)
FILES_PER_CONNECTION = {"load": 1, "proxy": 6, "nginx": 2, "replica": 1}
#: nginx keeps this many of a worker's files for itself (listeners, logs, its own healthz probes)
NGINX_SPARE_FILES = 1000
#: the ports nginx listens on inside its container: 8080 (the lab's usual one), then 8081, 8082, ...
FIRST_LISTEN_PORT = 8080
#: bounds of what the lab renders and starts (nginx workers, listen ports, replicas)
MAX_WORKERS = 32
MAX_PORTS = 64
MAX_REPLICAS = 32


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
#: at least one load process per core, and one nginx worker per core
MIN_LOAD = 2
MIN_WORKERS = 2
#: connection attempts in flight per replica: a replica accepts from a listen backlog of 100 (asyncio's
#: default), and an overflowing backlog drops the SYN, which nginx sees as a failed upstream (502)
IN_FLIGHT_PER_REPLICA = 80


class PlanError(LabError):
    """N connections cannot be laid out under the limits given."""


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


def capacity(kind: str, fd_limit: int) -> int:
    """Connections one process of `kind` is planned to carry under `fd_limit` open files."""
    return int(fd_limit * HEADROOM) // FILES_PER_CONNECTION[kind]


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
    caps = {kind: capacity(kind, fd_limit) for kind in FILES_PER_CONNECTION}
    if via is Via.BRIDGE:  # no docker-proxy: a listen port is bound by its ephemeral source ports only
        caps["proxy"] = int(ephemeral_ports * HEADROOM)
    ports = math.ceil(connections / caps["proxy"])
    workers = max(MIN_WORKERS, math.ceil(connections / caps["nginx"]))
    if not 0 <= replicas <= MAX_REPLICAS:
        raise PlanError(f"replicas {replicas}: give 0 (as many as N needs) .. {MAX_REPLICAS}")
    replicas = max(MIN_REPLICAS, replicas, math.ceil(connections / caps["replica"]))
    load = max(MIN_LOAD, math.ceil(connections / caps["load"]))
    most = min(MAX_PORTS * caps["proxy"], MAX_WORKERS * caps["nginx"], MAX_REPLICAS * caps["replica"])
    if connections > most:
        raise PlanError(f"N={connections} is more than this layout holds under a {fd_limit}-file limit "
                        f"(at most {most}: {MAX_PORTS} ports, {MAX_WORKERS} nginx workers, {MAX_REPLICAS} "
                        f"replicas); give a smaller N")
    # Each (source address, destination address, destination port) has its own ephemeral source ports:
    # load -> 127.0.0.1:published port, docker-proxy -> nginx:listen port, nginx -> replica:8000.
    busiest = max(math.ceil(connections / ports), math.ceil(connections / replicas))
    if busiest > ephemeral_ports:
        raise PlanError(f"N={connections} puts {busiest} connections on one destination, more than the "
                        f"{ephemeral_ports} ephemeral ports; give a smaller N")
    tracked = CONNTRACK_PER_CONNECTION[via] * connections
    if conntrack_max is not None and tracked > conntrack_max:
        raise PlanError(f"N={connections} needs ~{tracked} tracked connections ({via.value}) but the host's conntrack "
                        f"table holds {conntrack_max}; give a smaller N, --via bridge, or raise "
                        f"net.netfilter.nf_conntrack_max")
    return Layout(connections=connections, fd_limit=fd_limit, load_processes=load, ports=ports,
                  nginx_workers=workers, worker_connections=fd_limit - NGINX_SPARE_FILES, replicas=replicas,
                  ephemeral_ports=ephemeral_ports,
                  concurrency=max(1, IN_FLIGHT_PER_REPLICA * replicas // load), via=via)


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
