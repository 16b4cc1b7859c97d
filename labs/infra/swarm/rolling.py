"""A rolling restart on a Swarm: each replica's service updated with `docker service update --force`, the
Swarm's own way (`--update-order`, `--update-delay`, `--update-parallelism`), and what its tasks are stopped
with.

Each replica (app-N) is a service of its own with one task pinned to its node, so the Swarm's parallelism
and delay act within one service: the lab updates `max_unavailable` services at once, each with
parallelism `max_unavailable` and delay `step_pause`. Swarm waits the delay after a task is replaced and
then watches it for `UPDATE_MONITOR_S` before it calls the update completed; the next step starts then.

The mapping is pure (`update_config`, `stop_settings`, `update_settled`); `replace` drives a stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import docker.types

from ...errors import StackError
from ...scenario import Fault
from ..operations import STOP_GRACE_S

#: how long Swarm watches a replaced task for a failure before it calls the update completed (`docker
#: service update --update-monitor`; Swarm's default is 5 s)
UPDATE_MONITOR_S = 2.0
#: how long a rolling restart's step may take: the new task running, reached through nginx, the update done
STEP_TIMEOUT_S = 60.0
#: UpdateStatus states that end an update without completing it: the lab's updates pause on a failure
#: (`failure_action = pause`), and a rollback is what someone else asked for
NOT_COMPLETED = {"paused", "rollback_started", "rollback_paused", "rollback_completed"}
#: a task that no longer runs
TASK_STOPPED = {"shutdown", "complete", "failed", "rejected", "orphaned", "remove"}

_NS = 1_000_000_000


def update_config(fault: Fault) -> docker.types.UpdateConfig:
    """The service's UpdateConfig for a rolling restart: its order, `step_pause` as the delay and
    `max_unavailable` as the parallelism; a failed new task pauses the update (the lab reports it)."""
    return docker.types.UpdateConfig(parallelism=fault.max_unavailable, delay=round(fault.step_pause * _NS),
                                     failure_action="pause", monitor=round(UPDATE_MONITOR_S * _NS),
                                     order=fault.order.value)


def stop_settings(graceful: bool) -> dict[str, Any]:
    """How a replica's task is stopped (when its service is updated or removed), as `services.create` takes
    it: SIGTERM with STOP_GRACE_S to exit (the app closes its clients with 1001), or SIGKILL. A task is
    stopped as its service was when the task was made, so this is given when the service is created."""
    return {"stop_signal": "SIGTERM" if graceful else "SIGKILL", "stop_grace_period": STOP_GRACE_S * _NS}


def update_settled(name: str, status: dict[str, Any] | None) -> bool:
    """The service's UpdateStatus (None: the update has not begun) says the update completed; raises when
    it stopped without completing."""
    state = (status or {}).get("State")
    if state in NOT_COMPLETED:
        raise StackError(f"{name}: the Swarm's update of its service stopped in state {state}: "
                         f"{(status or {}).get('Message', '')}".rstrip(": "))
    return state == "completed"


class Updating(Protocol):
    """What a rolling restart uses of a `SwarmStack`."""

    @property
    def services(self) -> dict[str, Any]: ...

    @property
    def progress(self) -> Callable[[str], None]: ...

    def running_task(self, name: str, other_than: str | None = None) -> dict[str, Any] | None: ...
    def poll(self, what: str, probe: Callable[[], bool], timeout: float) -> None: ...
    def refresh(self, names: list[str], timeout: float = 60.0, *, replaced: dict[str, str] | None = None) -> None: ...


def replace(stack: Updating, batch: list[str], fault: Fault) -> list[tuple[str, float, float]]:
    """Update every service of `batch` at once, then for each, wait until its new task runs and nginx reaches
    it and its old task has stopped, then until Swarm calls each update completed. Each replica's (name,
    from, until): from the update until both (start-first: the old task is stopped last, 2 s after it left
    the names; stop-first: the new one is reached last)."""
    config = update_config(fault)
    began: dict[str, float] = {}
    old: dict[str, str] = {}
    for name in batch:
        began[name] = time.monotonic()
        old[name] = update(stack, name, config)
    ready: dict[str, float] = {}
    for name in batch:
        stack.refresh([name], STEP_TIMEOUT_S, replaced={name: old[name]})
        t0 = time.monotonic()
        stack.poll(name, partial(stopped, stack, name, old[name]), STEP_TIMEOUT_S)
        ready[name] = time.monotonic()
        stack.progress(f"{name}: old task stopped {ready[name] - t0:.2f}s later")
    for name in batch:
        stack.poll(name, partial(settled, name, stack.services[name]), STEP_TIMEOUT_S)
    return [(name, began[name], ready[name]) for name in batch]


def update(stack: Updating, name: str, config: docker.types.UpdateConfig) -> str:
    """`docker service update --force` with `config`: Swarm replaces the service's task. Returns the id of
    the task being replaced."""
    task = stack.running_task(name)
    if task is None:
        raise StackError(f"{name}: no task runs, nothing to replace")
    service = stack.services[name]
    service.reload()  # an update names the version it changes: the one Swarm holds now
    service.update(force_update=True, update_config=config)
    return str(task["ID"])


def stopped(stack: Updating, name: str, task_id: str) -> bool:
    """The service's task `task_id` no longer runs (a replaced task leaves the names first, then is stopped:
    Docker waits 2 s between, for the overlay's gossip)."""
    tasks = stack.services[name].tasks(filters={"id": task_id})
    return not tasks or tasks[0]["Status"]["State"] in TASK_STOPPED


def settled(name: str, service: Any) -> bool:
    """Swarm called the service's update completed (after its delay and monitor period)."""
    service.reload()
    return update_settled(name, service.attrs.get("UpdateStatus"))
