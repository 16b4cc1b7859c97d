"""The kinds of fault a scenario can schedule, and what each one hits: a replica, the broker's container,
a Redis Cluster's node, a Swarm node, or the topology itself (a replica added or removed, the replicas
restarted one by one, the load balancer reloaded). Which brokers take which kind is the brokers' business
(brokers.py).
"""

from __future__ import annotations

import enum


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
    #: start replica N+1 (more with `count`), then reload the balancer with it among its servers
    SCALE_OUT = "scale-out"
    #: take a replica out of the balancer's servers, reload it, then SIGTERM the replica and wait for it to exit
    SCALE_IN = "scale-in"
    #: replace the replicas one at a time (SIGTERM or SIGKILL, start again, wait until ready)
    ROLLING_RESTART = "rolling-restart"
    #: the balancer reloads its config (nginx: SIGHUP, HAProxy: SIGUSR2) while WebSockets are open
    RELOAD_LB = "reload-lb"
    #: the clients on a replica (or every client: target "all") close their transports themselves, without
    #: leaving (Engine.IO's close, no Socket.IO DISCONNECT), as a browser whose network changed; they
    #: reconnect as the workload says (Socket.IO apps only)
    CLOSE_TRANSPORTS = "close-transports"

    @property
    def targets_replica(self) -> bool:
        return self in {FaultKind.KILL_REPLICA, FaultKind.PARTITION_REPLICA, FaultKind.SLOW_CONSUMER}

    @property
    def targets_clients(self) -> bool:
        """It acts on the scripted clients, not on a container."""
        return self is FaultKind.CLOSE_TRANSPORTS

    @property
    def targets_cluster_node(self) -> bool:
        return self is FaultKind.KILL_CLUSTER_MASTER

    @property
    def targets_node(self) -> bool:
        return self in {FaultKind.KILL_NODE, FaultKind.PARTITION_NODE, FaultKind.DRAIN_NODE}

    @property
    def changes_topology(self) -> bool:
        """A deploy rather than a failure: replicas added, removed or replaced, the load balancer reloaded."""
        return self in TOPOLOGY_CHANGES

    @property
    def reloads_lb(self) -> bool:
        """It reloads the balancer (so `shutdown_timeout` applies to it)."""
        return self in {FaultKind.SCALE_OUT, FaultKind.SCALE_IN, FaultKind.RELOAD_LB}


TOPOLOGY_CHANGES = frozenset({FaultKind.SCALE_OUT, FaultKind.SCALE_IN, FaultKind.ROLLING_RESTART,
                              FaultKind.RELOAD_LB})


class UpdateOrder(enum.Enum):
    """A rolling restart on a Swarm (`docker service update --update-order`): the old task stopped before the
    new one starts (Swarm's default, and what one engine always does), or the new one running first."""

    STOP_FIRST = "stop-first"
    START_FIRST = "start-first"


#: the keys only some kinds take (any other kind refuses them)
KIND_KEYS: dict[str, frozenset[FaultKind]] = {
    "graceful": frozenset({FaultKind.ROLLING_RESTART}),
    "drain": frozenset({FaultKind.ROLLING_RESTART}),
    "max_unavailable": frozenset({FaultKind.ROLLING_RESTART}),
    "step_pause": frozenset({FaultKind.ROLLING_RESTART}),
    "order": frozenset({FaultKind.ROLLING_RESTART}),
    "shutdown_timeout": frozenset({FaultKind.SCALE_OUT, FaultKind.SCALE_IN, FaultKind.RELOAD_LB}),
    "count": frozenset({FaultKind.SCALE_OUT}),
}


#: faults that talk to Redis itself, and the broker-neutral kind that does the same to any broker (if any)
REDIS_ONLY: dict[FaultKind, FaultKind | None] = {
    FaultKind.RESTART_REDIS: FaultKind.RESTART_BROKER, FaultKind.PAUSE_REDIS: FaultKind.PAUSE_BROKER,
    FaultKind.KILL_PUBSUB_CLIENTS: None,
}

#: faults a Swarm cannot take as the one engine does: a stopped Redis comes back as a new task (its
#: append-only file gone with the old container), and Swarm keeps its tasks on their networks
NOT_ON_SWARM = {FaultKind.RESTART_REDIS: "Redis would come back as a new task, without its append-only file",
                FaultKind.RESTART_BROKER: "the broker would come back as a new task, without its files",
                FaultKind.PARTITION_REPLICA: "Swarm does not let a task's container leave its network",
                FaultKind.KILL_CLUSTER_MASTER: "Redis Cluster brokers run on one engine only",
                FaultKind.CLOSE_TRANSPORTS: "the Swarm engine's clients do not take it yet",
                **{kind: "it renders nginx's upstream anew, and a Swarm's nginx reads its config from a Swarm "
                         "config: only rolling-restart (a service update) runs there"
                   for kind in sorted(TOPOLOGY_CHANGES - {FaultKind.ROLLING_RESTART}, key=lambda k: k.value)}}
