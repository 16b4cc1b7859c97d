"""The scenario model: what a scenario names (topology, workload, faults, expectation) as enums and frozen
dataclasses, and the limits a scenario must keep (its brokers and kinds of fault: brokers.py, faults.py).
Built and validated only by `parse`; trusted everywhere after.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .backoff import backoff_delay
from .brokers import Broker
from .expect import Bound, Metric
from .faults import FaultKind, UpdateOrder

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
#: a rolling restart's target when none is named: every replica, in order
ALL_REPLICAS = "all"
#: scale-out adds at most this many replicas at once; a shutdown timeout and a step pause are bounded too
MAX_SCALE_OUT = 8
MAX_SHUTDOWN_TIMEOUT_S = 600.0
MAX_STEP_PAUSE_S = 60.0
#: a Redis Cluster needs 3 masters at least (a failover needs a majority of masters); more is more containers
MIN_MASTERS, MAX_MASTERS = 3, 6
#: reconnection backoff: the first delay and the maximum (seconds)
MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY = 0.001, 60.0
MAX_RECONNECT_DELAY_MAX = 300.0


class Balance(enum.Enum):
    ROUND_ROBIN = "round-robin"
    IP_HASH = "ip-hash"
    #: `hash $remote_addr`: the address modulo the servers (a server added or removed moves most clients)
    HASH = "hash"
    #: `hash $remote_addr consistent`: on a ketama ring (a server added moves about 1/(N+1) of them)
    HASH_CONSISTENT = "hash-consistent"
    COOKIE = "cookie"
    #: partitioning by room: the room named in the WebSocket URL (`/ws?room=R`) picks the replica
    ROOM = "room"


class Balancer(enum.Enum):
    """What runs the load balancer: nginx, or HAProxy (Debian 12's 2.6)."""

    NGINX = "nginx"
    HAPROXY = "haproxy"

    @property
    def config_file(self) -> str:
        """The rendered config's file name, as a run's results keep it."""
        return "haproxy.cfg" if self is Balancer.HAPROXY else "nginx.conf"


#: a soft stop's knobs (HAProxy's hard-stop-after and close-spread-time), in seconds
MAX_SOFT_STOP_S = 3600.0


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
    #: approximate MAXLEN of each room's stream (redis-streams); with app socketio, of its one stream
    maxlen: int = 100_000
    cookie_name: str = "wslab_srv"
    #: Redis Cluster brokers: masters (redis-1..N) and replicas per master (redis-N+1..)
    cluster_masters: int = 3
    cluster_replicas: int = 0
    balancer: Balancer = Balancer.NGINX
    #: nginx only: failed connects after which nginx holds a replica down for 10 s (its `max_fails`; 0: never,
    #: the lab's choice; nginx's own default is 1)
    max_fails: int = 0
    #: HAProxy only: the longest a soft stop (a reload's old process) may last, in seconds (None: unbounded)
    hard_stop_after: float | None = None
    #: HAProxy only: a soft stop closes its connections spread over this many seconds (None: all at once)
    close_spread_time: float | None = None
    #: a server that keeps Socket.IO sessions for recovery (broker redis-streams, app socketio or
    #: seed-node-socketio) keeps one this many seconds after its client dropped (socket.io's
    #: `maxDisconnectionDuration`, 2 minutes by default)
    max_disconnection_duration: float = 120.0

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
    #: the backoff before each reconnection attempt (`backoff.backoff_delay`): the first delay in seconds,
    #: doubled at each attempt up to the maximum, moved by up to +/- `randomization` of itself. These
    #: defaults wait 0.05, 0.1, 0.2, 0.4, then 0.5 s, with no jitter
    reconnect_delay: float = 0.05
    reconnect_delay_max: float = 0.5
    randomization: float = 0.0
    transport: Transport = Transport.WEBSOCKET
    #: how many distinct /24 source networks clients appear to come from (via a trusted X-Forwarded-For)
    source_subnets: int = 1
    #: bytes of text carried by each message, besides its id and timestamps (app = "websocket")
    payload: int = 0
    #: the event shapes Socket.IO clients emit (app = "socketio")
    events: Events = Events.LAB

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnection attempt `attempt` (0: the first after a drop)."""
        return backoff_delay(attempt, self.reconnect_delay, self.reconnect_delay_max, self.randomization, rng)

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
    #: rolling-restart: SIGTERM and wait for the exit (True), or SIGKILL (False)
    graceful: bool = True
    #: rolling-restart: take each replica out of the balancer's servers (a reload) before it stops, and put it
    #: back once it is ready; False: the balancer is not told, and finds out by failing to reach it
    drain: bool = False
    #: rolling-restart: how many replicas are replaced at a time
    max_unavailable: int = 1
    #: rolling-restart: seconds between one step's replicas being ready and the next step
    step_pause: float = 0.0
    #: kinds that reload the balancer: the old workers' connections are cut this long after a reload (nginx's
    #: `worker_shutdown_timeout`; behind HAProxy the topology's `hard_stop_after`, `hard-stop-after`); None:
    #: both balancers' default, old workers live as long as their connections
    shutdown_timeout: float | None = None
    #: scale-out: how many replicas are added
    count: int = 1
    #: rolling-restart on a Swarm: the service update's order (one engine always stops first)
    order: UpdateOrder = UpdateOrder.STOP_FIRST

    @property
    def restarts_all(self) -> bool:
        """A rolling restart of every replica (no target named)."""
        return self.kind is FaultKind.ROLLING_RESTART and self.target == ALL_REPLICAS


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
