"""How many processes of each kind hold N WebSocket connections under the host's per-process open-file
limit, and the limits each is given. Every stack is sized here (`size_stack`, 20,000 connections unless the
host cannot), and the connection bench plans its layout from the same numbers. Pure, but for
`host_file_limit`, which reads the limit.

Every process on a connection's path holds files for it, and none may hold more than the host's hard
`nofile` limit (20,000 here, root included, containers too); the lab reads that limit and never asks for
more (nor for more than `MAX_FILES`, even where the host allows it):

  client          -> docker-proxy (one per published port) -> nginx worker -> replica
  1 per connection   6 per connection                         2               1

docker-proxy (the userland proxy through which the host reaches a port published on 127.0.0.1) holds its
two sockets and, measured here, two pipes (four files) per connection: Go's splice keeps a pipe per
direction while it waits for data. So one published port carries ~3,300 connections at most on an engine
that runs it; the engine the lab starts runs none (`dockerd --userland-proxy=false`: netfilter carries the
port), and nginx's own address on the stack's front network never has one in the way.

nginx gets enough workers (`listen ... reuseport`: the kernel spreads connections over them), each allowed
the whole limit (`worker_rlimit_nofile`) and nearly all of it as `worker_connections`; every container gets
the same `nofile`. Each process is planned to use at most `HEADROOM` of the limit, because spreading by hash
or round robin is never exact.

HAProxy is one process (its threads share one table of files): each proxied WebSocket holds two of its
files, so its `maxconn` (global and in its frontend) is half the limit less a few files of its own, and one
HAProxy holds `haproxy_most` proxied WebSockets: 9,836 under a limit of 20,000, about half what nginx's
workers hold together. A HAProxy stack is sized to that.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass

from ..errors import LabError
from ..scenario import Balancer
from .render import MAX_WORKERS

#: the fraction of the open-file limit a process is planned to use (the rest: spread, listeners, logs)
HEADROOM = 0.75
#: files per connection in each kind of process (docker-proxy: measured 6.1 at 2,000 connections)
FILES_PER_CONNECTION = {"load": 1, "proxy": 6, "nginx": 2, "haproxy": 2, "replica": 1}
#: nginx keeps this many of a worker's files for itself (listeners, logs, its own healthz probes)
NGINX_SPARE_FILES = 1000
#: at least one nginx worker per core (two cores here)
MIN_WORKERS = 2
MAX_REPLICAS = 32
#: what every stack is sized to hold, unless the host's limit or its replicas cannot
DEFAULT_CONNECTIONS = 20_000
#: the most open files the lab plans for one process, even where the host's hard limit is higher
MAX_FILES = 20_000
#: the least a process needs to run at all
MIN_FILES = 1024
#: HAProxy keeps this many of its files for itself (listeners, its stats socket, the master's socket pair,
#: the DNS resolver's socket, its pollers and wake-up pipes)
HAPROXY_SPARE_FILES = 200
#: client connections HAProxy accepts beyond the WebSockets it is planned for (its own health answers, a
#: reconnect racing a close)
HAPROXY_MAXCONN_SPARE = 64
#: pending connections each listening socket may queue (nginx's, per worker, and each replica's, which
#: labs/app/server.py sets alike): a connect burst waits there instead of being dropped. The kernel caps it
#: at net.core.somaxconn, which the stack sets to the same value in each container's network namespace.
BACKLOG = 4096


class SizingError(LabError):
    """The host's limit is too low to size a stack."""


def capacity(kind: str, fd_limit: int) -> int:
    """Connections one process of `kind` is planned to carry under `fd_limit` open files."""
    return int(fd_limit * HEADROOM) // FILES_PER_CONNECTION[kind]


def nginx_workers(connections: int, fd_limit: int) -> int:
    """nginx workers that carry `connections` within `HEADROOM` of `fd_limit` (at least one per core)."""
    return max(MIN_WORKERS, math.ceil(connections / capacity("nginx", fd_limit)))


def haproxy_maxconn(fd_limit: int) -> int:
    """HAProxy's `maxconn` under `fd_limit` open files: two files per client connection it accepts."""
    return (fd_limit - HAPROXY_SPARE_FILES) // FILES_PER_CONNECTION["haproxy"]


def haproxy_most(fd_limit: int) -> int:
    """The most proxied WebSockets one HAProxy process holds under `fd_limit` open files."""
    return haproxy_maxconn(fd_limit) - HAPROXY_MAXCONN_SPARE


def replicas_for(connections: int, fd_limit: int) -> int:
    """Replicas that carry `connections` within `HEADROOM` of `fd_limit`."""
    return math.ceil(connections / capacity("replica", fd_limit))


def host_file_limit() -> int:
    """The hard open-file limit of this process: every process the lab starts, containers included, gets at
    most that (there is no CAP_SYS_RESOURCE to raise it, for root either)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@dataclass(frozen=True)
class Sizing:
    """What a stack holds and the limits that let it: nginx's workers and their files and connections, the
    containers' `nofile`, the listen backlog."""

    #: connections the stack holds: `wanted`, or fewer when the limit or the replicas cannot
    connections: int
    wanted: int
    #: open files planned per process: the host's hard limit, at most MAX_FILES
    fd_limit: int
    replicas: int
    nginx_workers: int
    worker_connections: int
    backlog: int = BACKLOG
    balancer: Balancer = Balancer.NGINX

    def __post_init__(self) -> None:
        if not MIN_FILES <= self.fd_limit <= MAX_FILES:
            raise SizingError(f"open-file limit {self.fd_limit} is outside {MIN_FILES}..{MAX_FILES}")
        if not 1 <= self.nginx_workers <= MAX_WORKERS or not 64 <= self.worker_connections <= self.fd_limit:
            raise SizingError(f"nginx needs 1..{MAX_WORKERS} workers and 64..{self.fd_limit} worker_connections, "
                              f"got {self.nginx_workers} and {self.worker_connections}")

    @property
    def worker_rlimit_nofile(self) -> int:
        return self.fd_limit

    @property
    def haproxy_maxconn(self) -> int:
        """HAProxy's `maxconn`, global and in its frontend (a HAProxy stack's; nginx's ignore it)."""
        return haproxy_maxconn(self.fd_limit)

    @property
    def nofile(self) -> int:
        """Every container's open-file limit (soft = hard)."""
        return self.fd_limit

    @property
    def reduced(self) -> bool:
        return self.connections < self.wanted

    def describe(self) -> str:
        held = (f"holds {self.connections:,} of {self.wanted:,} connections" if self.reduced
                else f"holds {self.connections:,} connections")
        workers = f"{self.nginx_workers} worker" + ("s" if self.nginx_workers != 1 else "")
        front = (f"HAProxy 1 process, maxconn {self.haproxy_maxconn:,}" if self.balancer is Balancer.HAPROXY
                 else f"nginx {workers} x {self.worker_connections:,} connections")
        return f"{held}: {front}, {self.replicas} replica(s), {self.fd_limit:,} open files per process"


def size_stack(replicas: int, *, fd_limit: int, connections: int = DEFAULT_CONNECTIONS,
               balancer: Balancer = Balancer.NGINX) -> Sizing:
    """The sizing that lets the balancer and `replicas` replicas hold `connections` WebSockets under a hard
    limit of `fd_limit` files per process, or as many as they can when that is fewer (`Sizing.reduced` says
    so): each replica carries `capacity("replica")`, nginx at most MAX_WORKERS workers, HAProxy its one
    process's `haproxy_most`. A limit below MIN_FILES is a SizingError (one line)."""
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise SizingError(f"connections {connections!r}: need a whole number, at least 1")
    if not 1 <= replicas <= MAX_REPLICAS:
        raise SizingError(f"replicas {replicas}: give 1..{MAX_REPLICAS}")
    if fd_limit < MIN_FILES:
        raise SizingError(f"the host's hard open-file limit is {fd_limit}, below the {MIN_FILES} a process here "
                          f"needs; raise it (`ulimit -Hn`, or LimitNOFILE= for a service)")
    limit = min(fd_limit, MAX_FILES)
    front = haproxy_most(limit) if balancer is Balancer.HAPROXY else MAX_WORKERS * capacity("nginx", limit)
    held = min(connections, replicas * capacity("replica", limit), front)
    return Sizing(connections=held, wanted=connections, fd_limit=limit, replicas=replicas,
                  nginx_workers=nginx_workers(held, limit),
                  worker_connections=limit - min(NGINX_SPARE_FILES, limit // 4), balancer=balancer)
