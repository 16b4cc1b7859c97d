"""The scenario model: what a scenario names (topology, workload, faults, expectation) as enums and frozen
dataclasses, and the limits a scenario must keep. Built and validated only by `parse`; trusted everywhere
after.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from .expect import Bound, Metric

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
#: a room is also a NATS subject token (`chat.<room>`): these characters never split one ('.') or widen it
#: ('*', '>'), and have no whitespace, so every room the lab accepts is a valid subject
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
COOKIE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MAX_REPLICAS = 32

# Limits on what one scenario may ask for. The largest shipped scenarios plan 1,200 sends (30 x 40),
# 34,800 deliveries (1,200 x 29) and 6 s of sending (120 messages at 20/s): each limit is >= 50x that.
#: clients x messages
MAX_SENDS = 100_000
#: clients x messages x (clients - 1): every send fans out to every other client
MAX_DELIVERIES = 2_000_000
#: messages x send_interval
MAX_SEND_DURATION_S = 300.0
MAX_FAULTS = 16
#: the longest recovery allowance a fault may declare: a finite bound, never "for ever"
MAX_RECOVERY_S = 120.0
#: how long after a fault healed what it cut may take to recover, unless the scenario says otherwise
DEFAULT_RECOVERY_S = 5.0
MAX_ROOMS = 1000
#: a Redis Cluster needs 3 masters at least (a failover needs a majority of masters); more is more containers
MIN_MASTERS, MAX_MASTERS = 3, 6


class Broker(enum.Enum):
    NONE = "none"
    REDIS_PUBSUB = "redis-pubsub"
    #: the seed article's code: SUBSCRIBE to the literal channel "chat:*", publish to "chat:<room>"
    SEED_GLOB = "seed-subscribe-glob"
    REDIS_STREAMS = "redis-streams"
    #: core NATS, one subject per room (at-most-once)
    NATS = "nats"
    #: NATS JetStream, one file stream over the room subjects (durable, resumable)
    NATS_JETSTREAM = "nats-jetstream"
    #: a Redis Cluster with classic PUBLISH/SUBSCRIBE: every node forwards every message over the cluster bus
    REDIS_CLUSTER_PUBSUB = "redis-cluster-pubsub"
    #: a Redis Cluster with SPUBLISH/SSUBSCRIBE: a room's traffic stays on its slot's shard
    REDIS_CLUSTER_SHARDED = "redis-cluster-sharded"

    @property
    def needs_redis(self) -> bool:
        return self.container == "redis"

    @property
    def container(self) -> str | None:
        """The broker's container, which broker faults target (None: none, or a cluster's many nodes)."""
        if self is Broker.NONE or self.cluster:
            return None
        return "nats" if self in {Broker.NATS, Broker.NATS_JETSTREAM} else "redis"

    @property
    def cluster(self) -> bool:
        """Its Redis is a cluster of nodes redis-1..N, not one `redis`."""
        return self in {Broker.REDIS_CLUSTER_PUBSUB, Broker.REDIS_CLUSTER_SHARDED}


class Balance(enum.Enum):
    ROUND_ROBIN = "round-robin"
    IP_HASH = "ip-hash"
    HASH = "hash"
    COOKIE = "cookie"
    #: partitioning by room: the room named in the WebSocket URL (`/ws?room=R`) picks the replica
    ROOM = "room"


class AppKind(enum.Enum):
    """What the replicas run: the plain `websockets` server, a python-socketio server, or the seed article's
    own Node servers (images/node/): its `ws` + node-redis server, and its socket.io +
    @socket.io/redis-adapter server."""

    WEBSOCKET = "websocket"
    SOCKETIO = "socketio"
    SEED_NODE_WS = "seed-node-ws"
    SEED_NODE_SOCKETIO = "seed-node-socketio"

    @property
    def socketio(self) -> bool:
        """Its clients speak Socket.IO."""
        return self in {AppKind.SOCKETIO, AppKind.SEED_NODE_SOCKETIO}


class Transport(enum.Enum):
    """How Socket.IO clients connect: long-polling only, WebSocket only, or polling then upgrade."""

    WEBSOCKET = "websocket"
    POLLING = "polling"
    DEFAULT = "default"


class Events(enum.Enum):
    """What Socket.IO clients emit: the lab's own shapes, or the seed article's
    (emit('join-room', roomId), emit('chat-message', roomId, message))."""

    LAB = "lab"
    ARTICLE = "article"


class FaultKind(enum.Enum):
    KILL_REPLICA = "kill-replica"
    RESTART_REDIS = "restart-redis"
    PAUSE_REDIS = "pause-redis"
    PARTITION_REPLICA = "partition-replica"
    KILL_PUBSUB_CLIENTS = "kill-pubsub-clients"
    SLOW_CONSUMER = "slow-consumer"
    #: restart-redis and pause-redis for any broker: they hit the broker's container (redis or nats)
    RESTART_BROKER = "restart-broker"
    PAUSE_BROKER = "pause-broker"
    #: SIGKILL a Redis Cluster master (redis-1..N); with replicas, one of its replicas is promoted
    KILL_CLUSTER_MASTER = "kill-cluster-master"
    #: a Swarm node's engine SIGKILLed with everything it ran (heal: started again, it rejoins)
    KILL_NODE = "kill-node"
    #: a Swarm node's link to the others down (heal: up again)
    PARTITION_NODE = "partition-node"
    #: a Swarm node set to drain: Swarm stops its tasks (heal: active again)
    DRAIN_NODE = "drain-node"

    @property
    def targets_replica(self) -> bool:
        return self in {FaultKind.KILL_REPLICA, FaultKind.PARTITION_REPLICA, FaultKind.SLOW_CONSUMER}

    @property
    def targets_cluster_node(self) -> bool:
        return self is FaultKind.KILL_CLUSTER_MASTER

    @property
    def targets_node(self) -> bool:
        return self in {FaultKind.KILL_NODE, FaultKind.PARTITION_NODE, FaultKind.DRAIN_NODE}

    def unfit(self, broker: Broker) -> str | None:
        """Why this fault cannot hit a stack with `broker`, e.g. "restart-redis needs a Redis broker (use
        restart-broker)" (None when it can)."""
        if self is FaultKind.SLOW_CONSUMER and broker not in SLOW_CONSUMER_BROKERS:
            return f"slow-consumer needs broker {' or '.join(b.value for b in SLOW_CONSUMER_BROKERS)}"
        if self.targets_replica or self.targets_node:
            return None
        if self.targets_cluster_node:
            return None if broker.cluster else f"{self.value} needs a redis-cluster-* broker"
        if broker.cluster:
            return (f"{self.value} needs one broker container; a cluster's node is killed with "
                    f"kind = \"{FaultKind.KILL_CLUSTER_MASTER.value}\"")
        if self in REDIS_ONLY and broker.container != "redis":
            instead = REDIS_ONLY[self]
            return (f"{self.value} needs a Redis broker"
                    + (f" (use {instead.value})" if instead is not None and broker.container else ""))
        if broker.container is None:
            return f"{self.value} needs a broker"
        return None


#: faults that talk to Redis itself, and the broker-neutral kind that does the same to any broker (if any)
REDIS_ONLY: dict[FaultKind, FaultKind | None] = {
    FaultKind.RESTART_REDIS: FaultKind.RESTART_BROKER, FaultKind.PAUSE_REDIS: FaultKind.PAUSE_BROKER,
    FaultKind.KILL_PUBSUB_CLIENTS: None,
}
#: a replica frozen while the broker holds a small buffer for it: Redis's pubsub output-buffer limit, or
#: nats-server's max_pending (JetStream's consumers resume after it)
SLOW_CONSUMER_BROKERS = (Broker.REDIS_PUBSUB, Broker.NATS, Broker.NATS_JETSTREAM)


NODE_RE = re.compile(r"^node-[1-9]$")


@dataclass(frozen=True)
class Swarm:
    """The scenario runs on a Docker Swarm of at least `nodes` nodes: the replicas round the nodes in turn,
    the broker and nginx are pinned to their nodes."""

    nodes: int = 3
    broker_node: str = "node-1"
    nginx_node: str = "node-1"


@dataclass(frozen=True)
class Topology:
    replicas: int = 3
    broker: Broker = Broker.NONE
    balance: Balance = Balance.ROUND_ROBIN
    app: AppKind = AppKind.WEBSOCKET
    #: approximate MAXLEN of each room's stream (redis-streams)
    maxlen: int = 100_000
    cookie_name: str = "wslab_srv"
    #: Redis Cluster brokers: masters (redis-1..N) and replicas per master (redis-N+1..)
    cluster_masters: int = 3
    cluster_replicas: int = 0

    @property
    def cluster_nodes(self) -> int:
        return self.cluster_masters * (1 + self.cluster_replicas) if self.broker.cluster else 0


@dataclass(frozen=True)
class Workload:
    clients: int = 12
    messages: int = 20
    room: str = "lobby"
    #: clients spread over this many rooms (client i joins room i mod rooms, named `<room>-<n>`); 1: `room`
    rooms: int = 1
    send_interval: float = 0.005
    connect_timeout: float = 10.0
    drain_quiet: float = 1.0
    drain_timeout: float = 15.0
    #: clients reconnect (with backoff) when their connection drops, and resume where they were
    reconnect: bool = False
    transport: Transport = Transport.WEBSOCKET
    #: how many distinct /24 source networks clients appear to come from (via a trusted X-Forwarded-For)
    source_subnets: int = 1
    #: bytes of text carried by each message, besides its id and timestamps (app = "websocket")
    payload: int = 0
    #: the event shapes Socket.IO clients emit (app = "socketio")
    events: Events = Events.LAB

    @property
    def send_duration(self) -> float:
        return self.messages * self.send_interval

    def room_for(self, index: int) -> str:
        """The room the `index`-th client (from 0) joins."""
        return self.room if self.rooms == 1 else f"{self.room}-{index % self.rooms}"

    def room_sizes(self) -> list[int]:
        """How many clients each room gets."""
        return [len(range(r, self.clients, self.rooms)) for r in range(self.rooms)]


@dataclass(frozen=True)
class Fault:
    """`kind` hits `target` at `at` seconds after sending starts, and is healed `heal_after` seconds later.
    What it cut or broke must recover within `recovery_s` after the heal: until then (and no longer) a loss
    on a path it reached is the fault's; a recovery that takes longer is a late recovery."""

    kind: FaultKind
    target: str
    at: float
    heal_after: float = 0.0
    recovery_s: float = DEFAULT_RECOVERY_S


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    topology: Topology
    workload: Workload
    expect: dict[Metric, Bound] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    path: Path | None = None
    #: the scenario demonstrates a failure: its verdict reads "fails as expected" when the outcome is met
    failure: bool = False
    #: run on a Docker Swarm ([swarm] table); None: on one engine
    swarm: Swarm | None = None
