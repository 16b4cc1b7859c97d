"""Faults as data, applied to a running stack (either engine's) at scheduled times and always healed.

One small class per kind with `apply()` and `heal()`; `run_faults` schedules them against the workload's
clock (host `time.monotonic()`), runs the Docker calls in threads so the clients keep going, and heals
every applied fault even when the run is cancelled. Topology changes (a deploy: scale-out, scale-in, a
rolling restart, the balancer reloaded: nginx or HAProxy, through its adapter) heal nothing and run one at
a time, in the order of their `at`; a rolling restart reports each replica it replaced as a fault of its
own, reaching that replica while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..accounting.history import FaultEvent
from ..accounting.reach import BROKER, LB, client, reach
from ..errors import StackError
from ..scenario import Fault, FaultKind
from .balancers import NAMES
from .redis_cluster import myself_flags
from .running import RunningStack, StackOperations


class ClientSide(Protocol):
    """The scripted clients of a run, for a fault that acts on them. Called from the fault's thread."""

    def close_transports(self, target: str) -> list[str]:
        """Close the transports of the clients connected to replica `target` (every client: "all"), as
        each client itself would; return their names."""
        ...


@dataclass
class Action:
    ops: StackOperations
    target: str
    #: the scheduled fault, for the kinds with keys of their own (a topology change's)
    fault: Fault | None = None
    #: what it did one replica at a time: (replica, from, until), each reported as a fault of its own
    steps: list[tuple[str, float, float]] = field(default_factory=list)
    #: the run's clients (a client-side fault acts on them)
    clients: ClientSide | None = None
    #: the parts it reached, when only applying it tells (the clients whose transports it closed)
    reached: tuple[str, ...] = ()

    def apply(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        pass

    def knobs(self) -> Fault:
        if self.fault is None:
            raise StackError(f"{type(self).__name__} needs its scheduled fault (a scenario's [[faults]] entry)")
        return self.fault

    def retire_within(self) -> float | None:
        """The shutdown timeout in force: a reload then waits until the old workers have cut their connections."""
        return self.knobs().shutdown_timeout


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


class ScaleOut(Action):
    """Start the next replica(s) (app-N+1…, named by the scenario), wait until ready, then reload the balancer
    with them among its servers. Nothing to heal: they stay (a scale-in removes one)."""

    def apply(self) -> None:
        first = int(self.target.removeprefix("app-"))
        names = [f"app-{first + i}" for i in range(self.knobs().count)]
        self.ops.scale_out(names, retire_within=self.retire_within())


class ScaleIn(Action):
    """Take the replica out of the balancer's servers and reload it, then SIGTERM the replica and wait until it
    exited (its clients are closed with 1001 and come back through the others). Nothing to heal."""

    def apply(self) -> None:
        self.ops.scale_in(self.target, retire_within=self.retire_within())


class ReloadLB(Action):
    """Reload the balancer with the same servers while WebSockets are open: with a shutdown timeout (nginx's
    worker_shutdown_timeout, HAProxy's hard-stop-after), wait until the old workers cut theirs."""

    def apply(self) -> None:
        self.ops.serve(tuple(self.ops.replicas()), retire_within=self.retire_within())


class RollingRestart(Action):
    """Replace the replicas (the target, or every one in order) `max_unavailable` at a time, each step as the
    engine does it (`StackOperations.replace`): on one engine stop (SIGTERM and wait for the exit, or SIGKILL),
    start again, wait until ready, `step_pause` between steps; on a Swarm a service update. With `drain`, the
    balancer is reloaded without the step's replicas first and with them again once they are ready; without,
    it learns they are gone by failing to reach them (nginx with max_fails then holds them down for its
    fail_timeout). The stops of one step go one after the other (see `membership`)."""

    def apply(self) -> None:
        f = self.knobs()
        everyone = self.ops.replicas()
        names = everyone if f.restarts_all else [self.target]
        for k in range(0, len(names), f.max_unavailable):
            self.steps += self.ops.replace(names[k:k + f.max_unavailable], f, serving=tuple(everyone), first=not k)


class CloseTransports(Action):
    """The clients on the target replica (or every client) close their transports, as a browser whose
    network changed: no Socket.IO DISCONNECT, so the server keeps the session for recovery. They come back
    as the workload reconnects. Nothing to heal."""

    def apply(self) -> None:
        if self.clients is None:
            raise StackError("close-transports acts on a run's clients, and this stack was given none")
        self.reached = tuple(client(name) for name in self.clients.close_transports(self.target))


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
    FaultKind.SCALE_OUT: ScaleOut,
    FaultKind.SCALE_IN: ScaleIn,
    FaultKind.RELOAD_LB: ReloadLB,
    FaultKind.ROLLING_RESTART: RollingRestart,
    FaultKind.CLOSE_TRANSPORTS: CloseTransports,
}


def reaches(fault: Fault, node_of: dict[str, str]) -> tuple[str, ...]:
    """What the fault reaches, for the checker: a node fault, every replica that ran on the node, the broker
    and the load balancer when they did; a scale-out its new replicas; any other kind what
    labs/accounting/reach.py says of it. A change that reloads the balancer with a shutdown timeout reaches
    the load balancer too: every connection through an old worker is cut."""
    if fault.kind.targets_node:
        here = sorted(name for name, node in node_of.items() if node == fault.target)
        parts = [name for name in here if name.startswith("app-")]
        parts += [BROKER for name in here if name in {"redis", "nats"} or name.startswith("redis-")][:1]
        return tuple(parts + ([LB] if NAMES & set(here) else []))
    found = set(reach(FaultEvent(fault.kind.value, fault.target, 0.0)))
    if fault.kind is FaultKind.SCALE_OUT:
        first = int(fault.target.removeprefix("app-"))
        found |= {f"app-{first + i}" for i in range(fault.count)}
    if fault.kind.reloads_lb and fault.shutdown_timeout is not None:
        found.add(LB)
    return tuple(sorted(found))


async def run_fault(stack: RunningStack, fault: Fault, *, started_at: float,
                    one_at_a_time: asyncio.Lock | None = None, clients: ClientSide | None = None) -> list[FaultEvent]:
    """Apply one fault at `started_at + fault.at`, heal it `heal_after` later (or on cancellation). A fault
    whose apply raised is healed too (it may have half happened) before the error goes on. A topology change
    first waits for `one_at_a_time` (the one before it still under way). What happened: one event, or one
    per step of a rolling restart."""
    action = ACTIONS[fault.kind](stack.operations(), fault.target, fault, clients=clients)
    parts = reaches(fault, stack.node_of())
    await asyncio.sleep(max(0.0, started_at + fault.at - time.monotonic()))
    async with one_at_a_time or contextlib.nullcontext():
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
        healed = time.monotonic()
    if action.steps:
        return [FaultEvent(fault.kind.value, name, began, ended, (name,), fault.recovery_s)
                for name, began, ended in action.steps]
    return [FaultEvent(fault.kind.value, fault.target, applied, healed, action.reached or parts, fault.recovery_s)]


def fault_schedule(stack: RunningStack, faults: tuple[Fault, ...]
                   ) -> Callable[[float, ClientSide], Coroutine[Any, Any, list[FaultEvent]]] | None:
    """What a workload runs beside its clients once sending starts: the scenario's faults, or nothing."""
    if not faults:
        return None
    return lambda started, clients: run_faults(stack, faults, started_at=started, clients=clients)


async def run_faults(stack: RunningStack, faults: tuple[Fault, ...], *, started_at: float,
                     clients: ClientSide | None = None) -> list[FaultEvent]:
    """Run every fault of a scenario concurrently (topology changes one at a time, in the order of their
    `at`); return what happened, in order of application."""
    changes = asyncio.Lock()
    events = await asyncio.gather(*(run_fault(stack, f, started_at=started_at, clients=clients,
                                              one_at_a_time=changes if f.kind.changes_topology else None)
                                    for f in sorted(faults, key=lambda f: f.at)))
    return sorted((e for each in events for e in each), key=lambda e: e.applied)
