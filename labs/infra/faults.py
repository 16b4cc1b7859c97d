"""Faults as data, applied to a running Stack at scheduled times and always healed.

One small class per kind with `apply()` and `heal()`; `run_faults` schedules them against the workload's
clock (host `time.monotonic()`), runs the Docker calls in threads so the clients keep going, and heals
every applied fault even when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from ..accounting.history import FaultEvent
from ..scenario import Fault, FaultKind
from .operations import Operations
from .stack import Stack


@dataclass
class Action:
    ops: Operations
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


class RestartRedis(Action):
    """Stop Redis (SIGTERM, so it flushes its append-only file), then start it again."""

    def apply(self) -> None:
        self.ops.stop(self.target, timeout=5)

    def heal(self) -> None:
        self.ops.start_again(self.target)


class PauseRedis(Action):
    """Freeze Redis: connections stay open but nothing is answered until it is unpaused."""

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
    """Freeze the replica while Redis has a tiny pubsub output-buffer limit: Redis drops its subscriber."""

    LIMIT = "pubsub 32kb 16kb 1"

    def apply(self) -> None:
        self.previous = self.ops.redis_cli("CONFIG", "GET", "client-output-buffer-limit").splitlines()[-1]
        pubsub = self.previous[self.previous.index("pubsub"):]
        self.ops.redis_cli("CONFIG", "SET", "client-output-buffer-limit", self.LIMIT)
        self.restore = pubsub
        self.ops.pause(self.target)

    def heal(self) -> None:
        self.ops.unpause(self.target)
        self.ops.redis_cli("CONFIG", "SET", "client-output-buffer-limit", self.restore)


class KillNode(Action):
    """A Swarm node dies: its engine and everything it ran are SIGKILLed (the clients of its replicas see
    their sockets close). Heal: the engine starts again, rejoins, and Swarm runs the node's tasks again."""

    ops: Any

    def apply(self) -> None:
        self.ops.kill_node(self.target)

    def heal(self) -> None:
        self.ops.restart_node(self.target)


class PartitionNode(Action):
    """A Swarm node's link to the others goes down: its tasks keep running, unreachable (clients on its
    replicas hang until their pings time out). Heal: the link comes back up."""

    ops: Any

    def apply(self) -> None:
        self.ops.cut_node(self.target)

    def heal(self) -> None:
        self.ops.link_node(self.target)


class DrainNode(Action):
    """A Swarm node set to drain: Swarm stops its tasks (pinned there, they wait). Heal: active again."""

    ops: Any

    def apply(self) -> None:
        self.ops.drain_node(self.target)

    def heal(self) -> None:
        self.ops.activate_node(self.target)


ACTIONS: dict[FaultKind, type[Action]] = {
    FaultKind.KILL_NODE: KillNode,
    FaultKind.PARTITION_NODE: PartitionNode,
    FaultKind.DRAIN_NODE: DrainNode,
    FaultKind.KILL_REPLICA: KillReplica,
    FaultKind.RESTART_REDIS: RestartRedis,
    FaultKind.PAUSE_REDIS: PauseRedis,
    FaultKind.PARTITION_REPLICA: PartitionReplica,
    FaultKind.KILL_PUBSUB_CLIENTS: KillPubsubClients,
    FaultKind.SLOW_CONSUMER: SlowConsumer,
}


def operations_for(stack: Stack) -> Operations:
    """The stack's own operations (a Swarm's also know its nodes), else the one engine's."""
    own = getattr(stack, "operations", None)
    return own() if own is not None else Operations(stack)


async def run_fault(stack: Stack, fault: Fault, *, started_at: float) -> FaultEvent:
    """Apply one fault at `started_at + fault.at`, heal it `heal_after` later (or on cancellation)."""
    action = ACTIONS[fault.kind](operations_for(stack), fault.target)
    await asyncio.sleep(max(0.0, started_at + fault.at - time.monotonic()))
    applied = time.monotonic()
    await asyncio.to_thread(action.apply)
    try:
        await asyncio.sleep(fault.heal_after)
    finally:
        # Heal even when cancelled: shield the Docker call so it runs to the end.
        await asyncio.shield(asyncio.to_thread(action.heal))
    return FaultEvent(fault.kind.value, fault.target, applied, time.monotonic())


def fault_schedule(stack: Stack, faults: tuple[Fault, ...]
                   ) -> Callable[[float], Coroutine[Any, Any, list[FaultEvent]]] | None:
    """What a workload runs beside its clients once sending starts: the scenario's faults, or nothing."""
    if not faults:
        return None
    return lambda started: run_faults(stack, faults, started_at=started)


async def run_faults(stack: Stack, faults: tuple[Fault, ...], *, started_at: float) -> list[FaultEvent]:
    """Run every fault of a scenario concurrently; return what happened, in order of application."""
    events = await asyncio.gather(*(run_fault(stack, f, started_at=started_at) for f in faults))
    return sorted(events, key=lambda e: e.applied)
