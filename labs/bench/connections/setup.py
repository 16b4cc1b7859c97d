"""What a connection-bench run compares and how big it is, from the command line: the setup (broker, nginx's
policy, rooms, a cluster's masters), N, the runs and rounds, and the layout that carries N under this host's
limits (open files, ephemeral ports, conntrack). A word that is not one is a PlanError: one line, exit 2."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

from ...infra import redis_cluster
from ...scenario import MAX_MASTERS, MIN_MASTERS, Balance, Broker
from .plan import Layout, PlanError, Via, parse_choice, plan_layout

#: the brokers this bench sets up: one Redis, a Redis Cluster (classic or sharded Pub/Sub), or none
BROKERS = (Broker.REDIS_PUBSUB, Broker.REDIS_CLUSTER_PUBSUB, Broker.REDIS_CLUSTER_SHARDED, Broker.NONE)
#: nginx policies that keep the connections' spread known: even (round-robin) or by room
BALANCES = (Balance.ROUND_ROBIN, Balance.ROOM)
MAX_ROOMS = 10_000


def ephemeral_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    low, high = (int(v) for v in path.read_text().split())
    return high - low + 1


def conntrack(name: str, directory: Path = Path("/proc/sys/net/netfilter")) -> int | None:
    """`nf_conntrack_max` or `nf_conntrack_count` of the host's connection-tracking table; None without one."""
    try:
        return int((directory / name).read_text())
    except (OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run compares: the broker (a cluster's masters), nginx's policy, and how many rooms."""

    broker: Broker = Broker.REDIS_PUBSUB
    balance: Balance = Balance.ROUND_ROBIN
    rooms: int = 1
    masters: int = 3

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise PlanError(f"broker {self.broker.value!r}: this bench sets up "
                            f"{', '.join(b.value for b in BROKERS)}")
        if self.balance not in BALANCES:
            raise PlanError(f"balance {self.balance.value!r}: give {' or '.join(b.value for b in BALANCES)}")
        if not 1 <= self.rooms <= MAX_ROOMS:
            raise PlanError(f"rooms {self.rooms}: give 1..{MAX_ROOMS}")
        if not MIN_MASTERS <= self.masters <= MAX_MASTERS:
            raise PlanError(f"masters {self.masters}: a Redis Cluster here has {MIN_MASTERS}..{MAX_MASTERS} "
                            f"(a failover needs a majority of at least 3)")

    @property
    def nodes(self) -> list[str]:
        """The broker's containers: one `redis`, a cluster's masters, or none."""
        if self.broker.cluster:
            return redis_cluster.node_names(self.masters, 0)
        return ["redis"] if self.broker is Broker.REDIS_PUBSUB else []

    def describe(self) -> str:
        broker = {Broker.REDIS_PUBSUB: "one Redis (Pub/Sub)", Broker.NONE: "no broker",
                  Broker.REDIS_CLUSTER_PUBSUB: f"a Redis Cluster of {self.masters} masters (classic PUBLISH)",
                  Broker.REDIS_CLUSTER_SHARDED: f"a Redis Cluster of {self.masters} masters (sharded Pub/Sub)",
                  }[self.broker]
        rooms = "one room" if self.rooms == 1 else f"{self.rooms} rooms"
        return f"{broker}, nginx {self.balance.value}, {rooms}"


def parse_setup(broker: str, balance: str, rooms: str, masters: str) -> Setup:
    """A Setup from command-line words; PlanError (one line) naming what is wrong."""
    try:
        b = Broker(broker)
    except ValueError:
        raise PlanError(f"--broker {broker!r}: give one of {', '.join(x.value for x in BROKERS)}") from None
    try:
        policy = Balance(balance)
    except ValueError:
        raise PlanError(f"--balance {balance!r}: give {' or '.join(x.value for x in BALANCES)}") from None
    return Setup(b, policy, parse_count(rooms), parse_count(masters))


def parse_count(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise PlanError(f"N={text!r} is not a whole number; give e.g. N=20000") from None


def parse_via(text: str) -> Via:
    return parse_choice(Via, "--via", text)


def layout_for(connections: str, via: str, replicas: str, rooms: int) -> Layout:
    """The layout for N connections given on the command line, on this host's limits, with a member for
    each of `rooms`."""
    layout = plan_layout(parse_count(connections), fd_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                         ephemeral_ports=ephemeral_ports(), conntrack_max=conntrack("nf_conntrack_max"),
                         via=parse_via(via), replicas=parse_count(replicas))
    if rooms > layout.connections:
        raise PlanError(f"rooms {rooms} > N={layout.connections}: every room needs a member")
    return layout


def parse_rounds(runs: str, broadcasts: str) -> tuple[int, int]:
    """Runs (1..20) and rounds per run (1..50) from the command line."""
    runs_n, rounds = parse_count(runs), parse_count(broadcasts)
    if not 1 <= runs_n <= 20 or not 1 <= rounds <= 50:
        raise PlanError(f"runs {runs_n} and broadcasts {rounds} must be 1..20 and 1..50")
    return runs_n, rounds
