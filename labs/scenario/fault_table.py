"""A scenario's [[faults]]: each fault's kind, target, schedule and the keys its kind takes, validated.

Topology changes (scale-out, scale-in, rolling-restart, reload-lb) run one at a time, in the order of their
`at`, so the replicas each one finds are known here: a scale-out's new replicas are named (app-N+1 …), a
scale-in or a rolling restart must name a replica that is serving then, and nginx's
`worker_shutdown_timeout`, which its old workers read from the config they started with, is one value for
the whole run. Behind HAProxy its counterpart is the topology's `hard_stop_after` (a global setting, read
by the old process from the config it started with too): every change that reloads the balancer carries it
as its `shutdown_timeout`, and the fault's own key is refused there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import ScenarioError
from .brokers import unfit
from .expect import show
from .faults import KIND_KEYS, NOT_ON_SWARM, FaultKind, UpdateOrder
from .model import (
    ALL_REPLICAS,
    DEFAULT_RECOVERY_S,
    MAX_FAULTS,
    MAX_RECOVERY_S,
    MAX_REPLICAS,
    MAX_SCALE_OUT,
    MAX_SHUTDOWN_TIMEOUT_S,
    MAX_STEP_PAUSE_S,
    NODE_RE,
    Balancer,
    Fault,
    Swarm,
    Topology,
    Workload,
)
from .values import enum_of, float_of, int_of, refuse_unknown

KEYS = {"kind", "target", "at", "heal_after", "recovery_s", *KIND_KEYS}


def swarm_fault(kind: FaultKind, where: str) -> None:
    if kind in NOT_ON_SWARM:
        raise ScenarioError(f"{where}: {kind.value} does not run on a Swarm ({NOT_ON_SWARM[kind]}); "
                            "partition-node or kill-node are the Swarm's own")


def swarm_changes(faults: Sequence[Fault], where: str) -> None:
    """What a rolling restart on a Swarm (a service update) cannot do: drain (its nginx reads a Swarm config,
    never rendered anew), or mix graceful and killed restarts in one run (a task is stopped with the signal its
    service was created with)."""
    restarts = [(n, f) for n, f in enumerate(faults, 1) if f.kind is FaultKind.ROLLING_RESTART]
    for n, f in restarts:
        if f.drain:
            raise ScenarioError(f"{where} fault {n}: drain = true does not run on a Swarm (its nginx reads its config "
                                f"from a Swarm config, never rendered anew): leave drain out")
    if len({f.graceful for _, f in restarts}) > 1:
        raise ScenarioError(f"{where}: rolling restarts with graceful = true and graceful = false on a Swarm: a task "
                            f"stops with the signal its service was created with, one for the run")


def faults(items: Any, topology: Topology, workload: Workload, where: str,
           swarm: Swarm | None = None) -> tuple[Fault, ...]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where}: faults must be an array of tables ([[faults]]), got {show(items)}")
    if len(items) > MAX_FAULTS:
        raise ScenarioError(f"{where}: faults has {len(items):,} entries, more than {MAX_FAULTS}")
    out: list[Fault] = []
    end = workload.send_duration
    for n, item in enumerate(items, 1):
        here = f"{where} fault {n}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{here}: must be a table, got {show(item)}")
        refuse_unknown(item, KEYS, here)
        if "kind" not in item or "at" not in item:
            raise ScenarioError(f"{here}: needs kind and at")
        kind = enum_of(item, "kind", FaultKind.KILL_REPLICA, here)
        for key, kinds in KIND_KEYS.items():
            if key in item and kind not in kinds:
                takers = ", ".join(sorted(k.value for k in kinds))
                raise ScenarioError(f"{here}: {key} = {show(item[key])} does not fit {kind.value} (only {takers} "
                                    f"take{'s' if len(kinds) == 1 else ''} it)")
        if swarm is not None:
            swarm_fault(kind, here)
        elif "order" in item:
            raise ScenarioError(f"{here}: order = {show(item['order'])} is a Swarm service update's: it needs a [swarm] "
                                f"table (on one engine a rolling restart always stops a replica first)")
        why = unfit(kind, topology.broker)
        if why:
            raise ScenarioError(f"{here}: {why}, this topology has {topology.broker.value}")
        if kind.changes_topology:
            fault = _change(kind, item, topology, here)
        else:
            fault = Fault(kind, _target(kind, item, topology, swarm, here), *_schedule(item, here))
        if fault.at + fault.heal_after >= end:
            raise ScenarioError(f"{here}: at {fault.at:g}s + heal_after {fault.heal_after:g}s is past the end of "
                                f"sending ({end:g}s = messages x send_interval)")
        for m, other in enumerate(out, 1):
            if (not kind.changes_topology and other.target == fault.target and fault.at <= other.at + other.heal_after
                    and other.at <= fault.at + fault.heal_after):
                raise ScenarioError(f"{here}: {kind.value} on {show(fault.target)} at {fault.at:g}s until "
                                    f"{fault.at + fault.heal_after:g}s overlaps fault {m} ({other.kind.value}, "
                                    f"{other.at:g}s until {other.at + other.heal_after:g}s): one fault at a time "
                                    f"per target")
        out.append(fault)
    if swarm is not None:
        swarm_changes(out, where)
    return _in_order(out, topology, where)


def _schedule(item: dict[str, Any], where: str) -> tuple[float, float, float]:
    return (float_of(item, "at", 0.0, 0.0, 3600.0, where), float_of(item, "heal_after", 0.0, 0.0, 3600.0, where),
            float_of(item, "recovery_s", DEFAULT_RECOVERY_S, 0.0, MAX_RECOVERY_S, where))


def _target(kind: FaultKind, item: dict[str, Any], topology: Topology, swarm: Swarm | None, where: str) -> str:
    target = item.get("target", topology.broker.container or "redis")
    if kind.targets_node:
        if swarm is None:
            raise ScenarioError(f"{where}: {kind.value} needs a [swarm] table (nodes exist only on a Swarm)")
        if not (isinstance(target, str) and NODE_RE.fullmatch(target)) or int(target[5:]) > swarm.nodes:
            raise ScenarioError(f"{where}: {kind.value} needs target node-1..node-{swarm.nodes}, got {show(target)}")
        if target == "node-1":
            raise ScenarioError(f"{where}: {kind.value} on node-1, the Swarm's only manager: pick another node")
    elif kind.targets_cluster_node:
        _cluster_target(kind, target, topology, where)
    elif kind.targets_clients:
        target = item.get("target", ALL_REPLICAS)
        names = [f"app-{i}" for i in range(1, topology.replicas + 1)]
        if not topology.app.socketio:
            raise ScenarioError(f'{where}: {kind.value} closes Socket.IO clients\' transports; app = '
                                f'"{topology.app.value}" has none (use a socketio or seed-node-socketio app)')
        if target != ALL_REPLICAS and target not in names:
            raise ScenarioError(f"{where}: {kind.value} needs target app-1..app-{topology.replicas} (the clients "
                                f"on that replica) or \"{ALL_REPLICAS}\" (every client), got {show(target)}")
    elif kind.targets_replica:
        names = [f"app-{i}" for i in range(1, topology.replicas + 1)]
        if target not in names:
            raise ScenarioError(f"{where}: {kind.value} needs target app-1..app-{topology.replicas}, "
                                f"got {show(target)} (no such replica)")
    elif target != topology.broker.container:
        raise ScenarioError(f"{where}: {kind.value} targets {topology.broker.container}, got {show(target)} "
                            f"(the broker's container)")
    return str(target)


def _cluster_target(kind: FaultKind, target: Any, topology: Topology, where: str) -> None:
    """A cluster fault needs a cluster broker and names one of its masters."""
    if not topology.broker.cluster:
        raise ScenarioError(f"{where}: {kind.value} needs a redis-cluster-* broker, not {topology.broker.value}")
    masters = [f"redis-{i}" for i in range(1, topology.cluster_masters + 1)]
    if target not in masters:
        raise ScenarioError(f"{where}: {kind.value} needs target redis-1..redis-{topology.cluster_masters} (a "
                            f"master), got {show(target)}")
    if topology.cluster_replicas == 0:
        raise ScenarioError(f"{where}: {kind.value} needs cluster_replicas >= 1 (no replica could be promoted)")


def _change(kind: FaultKind, item: dict[str, Any], topology: Topology, where: str) -> Fault:
    """A topology change with its own keys; its target is checked against the replicas serving at its time
    once every fault is read (`_in_order`). Behind HAProxy a change that reloads it carries the topology's
    `hard_stop_after` as its `shutdown_timeout`."""
    if "heal_after" in item:
        raise ScenarioError(f"{where}: heal_after = {show(item['heal_after'])} does not fit {kind.value}: a topology "
                            f"change is not healed (a scale-in undoes a scale-out)")
    at, _, recovery_s = _schedule(item, where)
    lb = topology.balancer.value  # the balancer's container is named after it
    default = {FaultKind.SCALE_OUT: "", FaultKind.ROLLING_RESTART: ALL_REPLICAS, FaultKind.RELOAD_LB: lb}.get(kind)
    target = item.get("target", default)
    if kind is FaultKind.SCALE_OUT and "target" in item:
        raise ScenarioError(f"{where}: scale-out names its new replicas itself (the next app-N), got target = "
                            f"{show(target)}: give count instead")
    if target is None:
        raise ScenarioError(f"{where}: {kind.value} needs target, the replica to remove (app-N)")
    if kind is FaultKind.RELOAD_LB and target != lb:
        raise ScenarioError(f"{where}: reload-lb targets {lb}, got {show(target)} (the load balancer)")
    if not isinstance(target, str):
        raise ScenarioError(f"{where}: target must be a replica's name (app-N), got {show(target)}")
    flags = {key: item.get(key, default) for key, default in (("graceful", True), ("drain", False))}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ScenarioError(f"{where}: {key} must be true or false, got {show(value)}")
    timeout = None if "shutdown_timeout" not in item else float_of(item, "shutdown_timeout", 0.0, 0.001,
                                                                     MAX_SHUTDOWN_TIMEOUT_S, where)
    if topology.balancer is Balancer.HAPROXY:
        if timeout is not None:
            raise ScenarioError(f"{where}: shutdown_timeout = {show(item['shutdown_timeout'])} is nginx's "
                                f"worker_shutdown_timeout; behind HAProxy the old process's connections are cut "
                                f"by hard-stop-after: set topology.hard_stop_after instead")
        timeout = topology.hard_stop_after if kind.reloads_lb else None
    return Fault(kind, target, at, 0.0, recovery_s, **flags,
                 max_unavailable=int_of(item, "max_unavailable", 1, 1, MAX_REPLICAS, where),
                 step_pause=float_of(item, "step_pause", 0.0, 0.0, MAX_STEP_PAUSE_S, where),
                 shutdown_timeout=timeout, count=int_of(item, "count", 1, 1, MAX_SCALE_OUT, where),
                 order=enum_of(item, "order", UpdateOrder.STOP_FIRST, where))


def _in_order(faults: list[Fault], topology: Topology, where: str) -> tuple[Fault, ...]:
    """Walk the topology changes in the order they run, with the replicas serving at each: name each
    scale-out's new replicas (numbers are never reused), and check each scale-in's and rolling restart's
    target, one shutdown timeout for the run, and that a replica always serves."""
    serving = [f"app-{i}" for i in range(1, topology.replicas + 1)]
    highest = topology.replicas
    timeouts: dict[float | None, int] = {}
    previous: tuple[int, Fault] | None = None
    drained: int | None = None
    out = list(faults)
    changes = sorted((f.at, n, f) for n, f in enumerate(faults, 1) if f.kind.changes_topology)
    for _, n, f in changes:
        here = f"{where} fault {n}"
        if previous is not None and previous[1].at == f.at:
            raise ScenarioError(f"{here}: {f.kind.value} at {f.at:g}s starts with fault {previous[0]} "
                                f"({previous[1].kind.value}): topology changes run one at a time, give them "
                                f"different at")
        previous = (n, f)
        if f.kind.reloads_lb:
            timeouts.setdefault(f.shutdown_timeout, n)
            if len(timeouts) > 1:
                (a, m), (b, _) = list(timeouts.items())[:2]
                raise ScenarioError(f"{here}: shutdown_timeout = {show(b)} but fault {m} has {show(a)}: nginx "
                                    f"reads it from the config its old workers started with, one value for the run")
        if f.drain:
            drained = n
        if f.kind is FaultKind.SCALE_OUT:
            if len(serving) + f.count > MAX_REPLICAS:
                raise ScenarioError(f"{here}: scale-out by {f.count} makes {len(serving) + f.count} replicas, more "
                                    f"than {MAX_REPLICAS}")
            added = [f"app-{highest + i}" for i in range(1, f.count + 1)]
            highest += f.count
            serving += added
            out[n - 1] = dataclasses.replace(f, target=added[0])
        elif f.kind is FaultKind.SCALE_IN or (f.kind is FaultKind.ROLLING_RESTART and not f.restarts_all):
            if f.target not in serving:
                raise ScenarioError(f"{here}: {f.kind.value} needs a replica serving at {f.at:g}s "
                                    f"({', '.join(serving)}), got {show(f.target)}")
            if f.kind is FaultKind.SCALE_IN and len(serving) == 1:
                raise ScenarioError(f"{here}: scale-in of {f.target} would leave no replica to serve")
            if f.kind is FaultKind.SCALE_IN:
                serving.remove(f.target)
        if f.kind is FaultKind.ROLLING_RESTART:
            most = len(serving) if f.restarts_all else 1
            if f.max_unavailable > most:
                raise ScenarioError(f"{here}: max_unavailable = {f.max_unavailable} but the rolling restart "
                                    f"replaces {most} replica(s) ({f.target})")
    timeout = next((t for t in timeouts if t is not None), None)
    if topology.balancer is Balancer.HAPROXY:
        timeout, knob = topology.hard_stop_after, "topology.hard_stop_after"
    else:
        knob = "shutdown_timeout"
    if drained is not None and timeout is not None:
        raise ScenarioError(f"{where} fault {drained}: drain reloads {topology.balancer.value} at every step, and "
                            f"this run's {knob} = {show(timeout)} would cut every WebSocket each time: use one or "
                            f"the other")
    return tuple(out)
