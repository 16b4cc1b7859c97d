"""Faults as data, applied to a running stack (either engine's) at scheduled times and always healed.

One small class per kind with `apply()` and `heal()`; `run_faults` schedules them against the workload's
clock (host `time.monotonic()`), runs the Docker calls in threads so the clients keep going, and heals
every applied fault even when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..accounting.history import FaultEvent
from ..accounting.reach import BROKER, LB, reach
from ..errors import StackError
from ..scenario import Fault, FaultKind
from .balancers import NAMES
from .redis_cluster import myself_flags
from .running import RunningStack, StackOperations


@dataclass
class Action:
    ops: StackOperations
    target: str

    def apply(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        pass


class KillReplica(Action):
    """SIGKILL the replica (its clients' sockets drop), then start it again."""

    def apply(self) -> None:
        self.ops.kill(self.target)

    def heal(self) -> None:
        self.ops.start_again(self.target)


class RestartBroker(Action):
    """Stop the broker (SIGTERM, so Redis flushes its append-only file and nats-server its stream), then
    start it again."""

    def apply(self) -> None:
        self.ops.stop(self.target, timeout=5)

    def heal(self) -> None:
        self.ops.start_again(self.target)


class PauseBroker(Action):
    """Freeze the broker: connections stay open but nothing is answered until it is unpaused."""

    def apply(self) -> None:
        self.ops.pause(self.target)

    def heal(self) -> None:
        self.ops.unpause(self.target)


class PartitionReplica(Action):
    """Cut the replica off the Redis network; its clients stay connected to it through nginx."""

    def apply(self) -> None:
        self.ops.cut_from_redis(self.target)

    def heal(self) -> None:
        self.ops.reconnect_to_redis(self.target)


class KillPubsubClients(Action):
    """`CLIENT KILL TYPE pubsub`: every subscriber connection is closed by Redis."""

    def apply(self) -> None:
        self.ops.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")


class SlowConsumer(Action):
    """Freeze the replica while the broker keeps only a small buffer for it. Redis: a tiny pubsub
    output-buffer limit, set now, and Redis drops the replica's subscriber. NATS: the server was started
    with a 1 s write deadline (spec.NATS_SLOW), and it closes the replica's connection as a slow
    consumer."""

    LIMIT = "pubsub 32kb 16kb 1"

    def apply(self) -> None:
        if self.ops.has("redis"):
            self.previous = self.ops.redis_cli("CONFIG", "GET", "client-output-buffer-limit").splitlines()[-1]
            pubsub = self.previous[self.previous.index("pubsub"):]
            self.ops.redis_cli("CONFIG", "SET", "client-output-buffer-limit", self.LIMIT)
            self.restore = pubsub
        self.ops.pause(self.target)

    def heal(self) -> None:
        self.ops.unpause(self.target)
        if self.ops.has("redis"):
            self.ops.redis_cli("CONFIG", "SET", "client-output-buffer-limit", self.restore)


class KillClusterMaster(Action):
    """SIGKILL a Redis Cluster master (it must be one now); its replica is promoted once the others have
    not heard from it for the node timeout. Healing starts it again: it rejoins as a replica of the
    promoted node (its nodes.conf survives in the container)."""

    def apply(self) -> None:
        flags = myself_flags(self.ops.cluster_cli(self.target, "CLUSTER", "NODES"))
        if "master" not in flags:
            raise StackError(f"{self.target} is not a master now ({','.join(flags) or 'unknown'}), so killing it "
                             f"tests no failover")
        self.ops.kill(self.target)

    #: how long a restarted master may take to learn it was replaced (while it thinks it still owns its
    #: slots, what is published on it reaches nobody: the fault is not over)
    REJOIN_TIMEOUT = 30.0

    def heal(self) -> None:
        self.ops.start_again(self.target)
        deadline = time.monotonic() + self.REJOIN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                flags = myself_flags(self.ops.cluster_cli(self.target, "CLUSTER", "NODES"))
            except StackError:  # not answering yet
                flags = []
            if "slave" in flags:
                return
            time.sleep(0.05)
        raise StackError(f"{self.target} did not rejoin as a replica within {self.REJOIN_TIMEOUT:g}s")


class KillNode(Action):
    """A Swarm node dies: its engine and everything it ran are SIGKILLed (the clients of its replicas see
    their sockets close). Heal: the engine starts again, rejoins, and Swarm runs the node's tasks again."""

    def apply(self) -> None:
        self.ops.kill_node(self.target)

    def heal(self) -> None:
        self.ops.restart_node(self.target)


class PartitionNode(Action):
    """A Swarm node's link to the others goes down: its tasks keep running, unreachable (clients on its
    replicas hang until their pings time out). Heal: the link comes back up."""

    def apply(self) -> None:
        self.ops.cut_node(self.target)

    def heal(self) -> None:
        self.ops.link_node(self.target)


class DrainNode(Action):
    """A Swarm node set to drain: Swarm stops its tasks (pinned there, they wait). Heal: active again."""

    def apply(self) -> None:
        self.ops.drain_node(self.target)

    def heal(self) -> None:
        self.ops.activate_node(self.target)


ACTIONS: dict[FaultKind, type[Action]] = {
    FaultKind.KILL_NODE: KillNode,
    FaultKind.PARTITION_NODE: PartitionNode,
    FaultKind.DRAIN_NODE: DrainNode,
    FaultKind.KILL_REPLICA: KillReplica,
    FaultKind.RESTART_REDIS: RestartBroker,
    FaultKind.PAUSE_REDIS: PauseBroker,
    FaultKind.RESTART_BROKER: RestartBroker,
    FaultKind.PAUSE_BROKER: PauseBroker,
    FaultKind.PARTITION_REPLICA: PartitionReplica,
    FaultKind.KILL_PUBSUB_CLIENTS: KillPubsubClients,
    FaultKind.SLOW_CONSUMER: SlowConsumer,
    FaultKind.KILL_CLUSTER_MASTER: KillClusterMaster,
}


def reaches(fault: Fault, node_of: dict[str, str]) -> tuple[str, ...]:
    """What the fault reaches, for the checker: a node fault, every replica that ran on the node, the broker
    and the load balancer when they did; any other kind what labs/accounting/reach.py says of it."""
    if fault.kind.targets_node:
        here = sorted(name for name, node in node_of.items() if node == fault.target)
        parts = [name for name in here if name.startswith("app-")]
        parts += [BROKER for name in here if name in {"redis", "nats"} or name.startswith("redis-")][:1]
        return tuple(parts + ([LB] if NAMES & set(here) else []))
    return tuple(sorted(reach(FaultEvent(fault.kind.value, fault.target, 0.0))))


async def run_fault(stack: RunningStack, fault: Fault, *, started_at: float) -> FaultEvent:
    """Apply one fault at `started_at + fault.at`, heal it `heal_after` later (or on cancellation). A fault
    whose apply raised is healed too (it may have half happened) before the error goes on."""
    action = ACTIONS[fault.kind](stack.operations(), fault.target)
    parts = reaches(fault, stack.node_of())
    await asyncio.sleep(max(0.0, started_at + fault.at - time.monotonic()))
    applied = time.monotonic()
    try:
        await asyncio.to_thread(action.apply)
    except BaseException:
        with contextlib.suppress(Exception):  # the apply's error is the one to report
            await asyncio.shield(asyncio.to_thread(action.heal))
        raise
    try:
        await asyncio.sleep(fault.heal_after)
    finally:
        # Heal even when cancelled: shield the Docker call so it runs to the end.
        await asyncio.shield(asyncio.to_thread(action.heal))
    return FaultEvent(fault.kind.value, fault.target, applied, time.monotonic(), parts, fault.recovery_s)


def fault_schedule(stack: RunningStack, faults: tuple[Fault, ...]
                   ) -> Callable[[float], Coroutine[Any, Any, list[FaultEvent]]] | None:
    """What a workload runs beside its clients once sending starts: the scenario's faults, or nothing."""
    if not faults:
        return None
    return lambda started: run_faults(stack, faults, started_at=started)


async def run_faults(stack: RunningStack, faults: tuple[Fault, ...], *, started_at: float) -> list[FaultEvent]:
    """Run every fault of a scenario concurrently; return what happened, in order of application."""
    events = await asyncio.gather(*(run_fault(stack, f, started_at=started_at) for f in faults))
    return sorted(events, key=lambda e: e.applied)
