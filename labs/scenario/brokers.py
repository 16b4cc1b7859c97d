"""Each broker as a scenario knows it: its container, what it can do (keep a log, replay it, cut a slow
consumer, run on a Swarm), the faults it takes, the measures only its runs have, and its names.

These are facts without Docker: `parse` asks them to refuse a scenario, and the harness's registry
(labs/brokers.py) adds to each how its containers are built and what it is asked after a run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .expect import CLUSTER_ONLY, Metric
from .faults import REDIS_ONLY, TOPOLOGY_CHANGES, FaultKind


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
    def facts(self) -> BrokerFacts:
        return FACTS[self]

    @property
    def container(self) -> str | None:
        """The broker's container, which broker faults target (None: none, or a cluster's many nodes)."""
        return self.facts.container

    @property
    def cluster(self) -> bool:
        """Its Redis is a cluster of nodes redis-1..N, not one `redis`."""
        return self.facts.cluster


@dataclass(frozen=True)
class BrokerFacts:
    #: its name in a results table ("PubSub", "JetStream"...)
    label: str
    #: its one container, which broker faults target: "redis", "nats", or None (no broker, or a cluster)
    container: str | None
    #: the program in that container, as a fault's description names it ("Redis", "nats-server")
    server: str | None
    #: the faults it takes (any other is refused, see `unfit`)
    faults: frozenset[FaultKind]
    #: a Redis Cluster: nodes redis-1..N (masters first), formed once they are up
    cluster: bool = False
    #: it keeps each room's messages in a log that survives a restart of the broker
    durable: bool = False
    #: a client that reconnects is given what it missed from that log
    replays: bool = False
    #: why it runs on one engine only (None: it runs on a Swarm too)
    not_on_swarm: str | None = None
    #: the measures only its runs have (a scenario may expect them of it alone)
    measures: frozenset[Metric] = frozenset()

    @property
    def slow_consumer(self) -> bool:
        """Its subscriber connection has a buffer limit that a frozen replica (slow-consumer) fills and
        the broker then cuts: Redis's pubsub output-buffer limit, or nats-server's write deadline."""
        return FaultKind.SLOW_CONSUMER in self.faults

    @property
    def on_swarm(self) -> bool:
        return self.not_on_swarm is None


#: faults on a replica, a Swarm node, the clients or the topology: they need nothing of the broker
EVERYWHERE = frozenset({FaultKind.KILL_REPLICA, FaultKind.PARTITION_REPLICA, FaultKind.KILL_NODE,
                        FaultKind.PARTITION_NODE, FaultKind.DRAIN_NODE, FaultKind.CLOSE_TRANSPORTS}) | TOPOLOGY_CHANGES
#: and on the broker's one container, whatever runs in it
ONE_CONTAINER = EVERYWHERE | {FaultKind.RESTART_BROKER, FaultKind.PAUSE_BROKER}
#: and on Redis itself
ONE_REDIS = ONE_CONTAINER | frozenset(REDIS_ONLY)
SLOW = frozenset({FaultKind.SLOW_CONSUMER})

FACTS: dict[Broker, BrokerFacts] = {
    Broker.NONE: BrokerFacts("no broker", None, None, EVERYWHERE),
    Broker.REDIS_PUBSUB: BrokerFacts("PubSub", "redis", "Redis", ONE_REDIS | SLOW),
    Broker.SEED_GLOB: BrokerFacts("seed glob", "redis", "Redis", ONE_REDIS),
    Broker.REDIS_STREAMS: BrokerFacts("Streams", "redis", "Redis", ONE_REDIS, durable=True, replays=True),
    Broker.NATS: BrokerFacts("NATS", "nats", "nats-server", ONE_CONTAINER | SLOW),
    Broker.NATS_JETSTREAM: BrokerFacts("JetStream", "nats", "nats-server", ONE_CONTAINER | SLOW, durable=True,
                                       replays=True),
    **{broker: BrokerFacts(label, None, None, EVERYWHERE | {FaultKind.KILL_CLUSTER_MASTER}, cluster=True,
                           not_on_swarm="its nodes meet on a bus network of their own, which the Swarm engine "
                                        "does not build",
                           measures=CLUSTER_ONLY)
       for broker, label in ((Broker.REDIS_CLUSTER_PUBSUB, "Cluster PUBLISH"),
                             (Broker.REDIS_CLUSTER_SHARDED, "Cluster sharded"))},
}


def unfit(kind: FaultKind, broker: Broker) -> str | None:
    """Why `kind` cannot hit a stack with `broker`, e.g. "restart-redis needs a Redis broker (use
    restart-broker)" (None when it can)."""
    facts = broker.facts
    if kind in facts.faults:
        return None
    if kind.targets_replica:
        takers = " or ".join(b.value for b in Broker if kind in b.facts.faults)
        return f"{kind.value} needs broker {takers}"
    if kind.targets_cluster_node:
        return f"{kind.value} needs a redis-cluster-* broker"
    if facts.cluster:
        return (f"{kind.value} needs one broker container; a cluster's node is killed with "
                f"kind = \"{FaultKind.KILL_CLUSTER_MASTER.value}\"")
    if kind in REDIS_ONLY:
        instead = REDIS_ONLY[kind]
        return (f"{kind.value} needs a Redis broker"
                + (f" (use {instead.value})" if instead is not None and facts.container else ""))
    return f"{kind.value} needs a broker"
