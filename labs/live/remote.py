"""Faults on demand: the scenario's fault kinds applied to a live stack from another process, and healed.

The stack is found by its run's label (the state file names the run), so `fault` and `heal` need nothing
from the `up` process but that file. The fault classes are the ones scenarios schedule
(`labs.infra.faults.ACTIONS`); what a heal needs to know (e.g. the Redis setting a slow consumer changed)
is kept in the state file between the two commands.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from ..errors import LabError
from ..infra.faults import ACTIONS, Action
from ..infra.operations import Operations
from ..scenario import Broker, FaultKind, unfit
from ..settings import LABEL
from .state import AppliedFault, LiveState

#: the live stack runs on one engine: node faults are for Swarm scenarios; a topology change has its own
#: commands there (`scale`, `deploy`, `reload`: labs.live.topology)
KINDS = tuple(k.value for k in FaultKind if not k.targets_node and not k.changes_topology
              and not k.targets_clients)
#: faults applied with `redis-cli` inside the Redis container
TALKS_TO_REDIS = (FaultKind.SLOW_CONSUMER, FaultKind.KILL_PUBSUB_CLIENTS)


def check_kind(kind: str) -> FaultKind:
    """The fault kind named `kind`, or one line listing the kinds there are."""
    try:
        found = FaultKind(kind)
    except ValueError:
        raise LabError(f"unknown fault kind {kind!r}; choose one of {', '.join(KINDS)}") from None
    if found.changes_topology:
        raise LabError(f"{kind} is a topology change: on a live stack run `python -m labs scale N`, `deploy` or "
                       f"`reload` (faults here: {', '.join(KINDS)})")
    if found.targets_clients:
        raise LabError(f"{kind} acts on a run's scripted clients: schedule it in a scenario's [[faults]] "
                       f"(on a live stack: {', '.join(KINDS)})")
    return found


def check_target(kind: FaultKind, target: str, state: LiveState) -> None:
    """The same rules as a scenario's faults: replica kinds hit app-1..app-N, cluster kinds a node of a Redis
    Cluster, the others the broker's container (which the stack must have; Redis-only kinds need Redis),
    slow-consumer needs redis-pubsub here (NATS needs a small max_pending from the start, which a scenario
    declaring it gets), and one fault at a time per target."""
    if kind.targets_cluster_node:
        if not state.broker.startswith("redis-cluster-") or not target.startswith("redis-"):
            raise LabError(f"{kind.value} needs a node of a Redis Cluster (redis-1..N); this stack "
                           f"({state.scenario}) has broker {state.broker}, target {target!r}")
    elif kind.targets_replica:
        if target not in state.replica_names:
            raise LabError(f"{kind.value} needs a replica serving in this stack ({', '.join(state.replica_names)}); "
                           f"got {target!r}")
        if kind is FaultKind.SLOW_CONSUMER and state.broker != "redis-pubsub":
            raise LabError(f"slow-consumer needs broker redis-pubsub; this stack ({state.scenario}) has "
                           f"{state.broker}")
    else:
        broker = Broker(state.broker)
        why = unfit(kind, broker)
        if why:
            raise LabError(f"{why}; this stack ({state.scenario}) has {state.broker}")
        if target != broker.container:
            raise LabError(f"{kind.value} targets {broker.container}; got {target!r}")
    for active in state.faults:
        if kind in TALKS_TO_REDIS and active.target == "redis":
            # an exec into a paused Redis freezes with it, and Docker 20.10 then hangs every call on it
            raise LabError(f"{kind.value} runs redis-cli in Redis, which has {active.kind} applied; "
                           f"run `python -m labs heal` first")
        if active.target == target:
            raise LabError(f"{target} already has {active.kind} applied; one fault at a time per target: "
                           f"run `python -m labs heal` first")


@dataclass
class Attached:
    """A live stack found by its label: what `Operations` uses (containers and networks by role)."""

    client: docker.DockerClient
    containers: dict[str, Container] = field(default_factory=dict)
    networks: dict[str, Any] = field(default_factory=dict)
    #: one command applies one fault at a time; the lock is there because `Operations` takes it
    membership: threading.Lock = field(default_factory=threading.Lock)


def attach(client: docker.DockerClient, run_id: str) -> Attached:
    """The containers and networks labelled with the run, by role (app-1, redis, nginx; front, back)."""
    found = Attached(client)
    selector = {"label": f"{LABEL}={run_id}"}
    # sparse: no inspect per container (an inspect waits behind an exec stuck in a paused container)
    for c in client.containers.list(all=True, filters=selector, sparse=True):
        found.containers[(c.attrs.get("Labels") or {}).get("wslab.role", c.id)] = c
    for n in client.networks.list(filters=selector):
        role = n.attrs.get("Labels", {}).get("wslab.role", "")
        found.networks[role.removeprefix("network-")] = n
    if not found.containers:
        raise LabError(f"no container of run {run_id} is left; the stack is gone: run `python -m labs down`")
    return found


def _action(stack: Attached, kind: FaultKind, target: str) -> Action:
    if target not in stack.containers:
        raise LabError(f"{target} is not part of the running stack ({', '.join(sorted(stack.containers))})")
    return ACTIONS[kind](Operations(stack), target)


def lasting(kind: FaultKind) -> bool:
    """Whether the fault lasts until healed (kill-pubsub-clients happens once: nothing to undo)."""
    return ACTIONS[kind].heal is not Action.heal


def apply(stack: Attached, kind: FaultKind, target: str) -> AppliedFault:
    """Apply the fault now; return what `heal` will need."""
    action = _action(stack, kind, target)
    try:
        action.apply()
    except docker.errors.APIError as exc:
        raise LabError(f"{kind.value} on {target} failed: {exc.explanation or exc}") from None
    saved = {k: v for k, v in vars(action).items() if k not in {"ops", "target"} and isinstance(v, str)}
    return AppliedFault(kind.value, target, time.time(), saved)


def heal(stack: Attached, fault: AppliedFault) -> None:
    """Undo one applied fault (with what its apply saved)."""
    action = _action(stack, FaultKind(fault.kind), fault.target)
    for key, value in fault.saved.items():
        setattr(action, key, value)
    try:
        action.heal()
    except docker.errors.APIError as exc:
        raise LabError(f"healing {fault.kind} on {fault.target} failed: {exc.explanation or exc}") from None
