"""What `scale N`, `deploy` and `reload` (labs.live.topology) share: their checks, the stack `up` runs found
again as a `Stack`, and one change's life under the state file's lock.

The stack is found by its run's label, and what a change needs besides its containers (the balancer's
config for a set of replicas, a replica made as the others were) comes from the scenario `up` ran, with the
images it ran (both in the state file): `attach` builds the same `Stack` that `up` holds, over the
containers that run, so a new replica is made by the one code that makes replicas, with the run's labels.

Each change holds the state file's lock from the first check to the last write (a `fault`, `heal` or
another change waits), and writes the replicas serving after each step, so the live view follows it and a
later command starts from what runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import docker
import docker.errors

from .. import scenario, signals
from ..console import EXIT_FAIL, EXIT_PASS
from ..errors import LabError, StackError
from ..infra.images import Image, ImageSet
from ..infra.stack import Stack
from ..scenario import (
    MAX_REPLICAS,
    MAX_SHUTDOWN_TIMEOUT_S,
    MAX_STEP_PAUSE_S,
    Fault,
    FaultKind,
    Scenario,
)
from ..settings import OWNER
from . import remote, state, view
from .state import LiveState

#: where a stack on this engine publishes its balancer (a Swarm's is on a node's address)
LOCAL = "127.0.0.1"
IMAGE_ROLES = ("app", "redis", "nginx", "node", "nats", "haproxy")
#: the longest a deploy waits, after its last step, for the clients it dropped to come back
MAX_SETTLE_S = 60.0


class Stopped(Exception):
    """A signal came between two steps of a deploy: it stops there."""


# -- checks: one line, before anything changes ------------------------------------------------------------

def check_scale(count: int) -> int:
    if not 1 <= count <= MAX_REPLICAS:
        raise LabError(f"scale {count}: give 1..{MAX_REPLICAS} replicas (a stack keeps at least one serving)")
    return count


def check_deploy(max_unavailable: int, pause: float, settle: float = 0.0) -> None:
    if not 1 <= max_unavailable <= MAX_REPLICAS:
        raise LabError(f"--max-unavailable {max_unavailable}: give 1..{MAX_REPLICAS} (replicas replaced at a time)")
    if not 0.0 <= pause <= MAX_STEP_PAUSE_S:
        raise LabError(f"--pause {pause:g}: give 0..{MAX_STEP_PAUSE_S:g} seconds between steps")
    if not 0.0 <= settle <= MAX_SETTLE_S:
        raise LabError(f"--settle {settle:g}: give 0..{MAX_SETTLE_S:g} seconds to wait for the clients to come back")


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not 0.001 <= timeout <= MAX_SHUTDOWN_TIMEOUT_S:
        raise LabError(f"--shutdown-timeout {timeout:g}: give 0.001..{MAX_SHUTDOWN_TIMEOUT_S:g} seconds")


def check_stack(live: LiveState, command: str, *, renders: bool, owner: str = OWNER,
                alive: Callable[[LiveState], bool] | None = None) -> None:
    """What every change needs of the stack: ready, on this engine, its `up` still running, this process
    labelling as `up` did, no fault applied; `renders` (nginx's worker_shutdown_timeout written into its
    config) needs nginx: behind HAProxy that bound is the topology's hard_stop_after."""
    flag = "" if live.name == state.DEFAULT_NAME else f" --name {live.name}"
    if not live.ready:
        raise LabError(f"stack {live.name!r} is still starting; run `{command}` again once `up` prints its URLs")
    if live.host != LOCAL:
        raise LabError(f"stack {live.name!r} runs on a Swarm (its balancer on {live.host}:{live.port}): `{command}` "
                       f"changes a stack on this engine; on a Swarm a rolling update is its own `docker service update`")
    if not live.source or not live.images:
        raise LabError(f"stack {live.name!r} was started by an older `up` that recorded no scenario and images; "
                       f"run `python -m labs down{flag}` and `up` again")
    if not (alive or (lambda s: state.alive(s.pid, s.pid_start)))(live):
        raise LabError(f"stack {live.name!r}'s `up` (pid {live.pid}) is gone; run `python -m labs down{flag}`")
    if live.owner and live.owner != owner:
        raise LabError(f"stack {live.name!r} was started with WSLAB_OWNER={live.owner} and this command runs as "
                       f"{owner}: run it with WSLAB_OWNER={live.owner}, so that new containers carry the run's labels")
    if renders and live.balancer != "nginx":
        raise LabError(f"`{command}` writes nginx's worker_shutdown_timeout; stack {live.name!r} runs {live.balancer}, "
                       f"whose bound is [topology] hard_stop_after (`scale`, `deploy`, and `reload` without "
                       f"--shutdown-timeout, run on it)")
    if live.faults:
        applied = ", ".join(f"{f.kind} on {f.target}" for f in live.faults)
        raise LabError(f"stack {live.name!r} has {applied} applied; run `python -m labs heal{flag}` first")


def scaled(live: LiveState, count: int) -> tuple[list[str], list[str]]:
    """The replicas a scale to `count` adds (the next numbers: never reused) and removes (the newest first)."""
    serving = list(live.replica_names)
    if count >= len(serving):
        first = live.last_number + 1
        return [f"app-{i}" for i in range(first, first + count - len(serving))], []
    return [], serving[count:][::-1]


def rendering(s: Scenario, timeout: float | None) -> Scenario:
    """The scenario whose renderer writes nginx's config with `timeout` as its worker_shutdown_timeout: the
    one reloading fault that declares it (spec.shutdown_timeout_ms reads it there), the others as they are."""
    kept = tuple(f for f in s.faults if not f.kind.reloads_lb)
    declared = (Fault(FaultKind.RELOAD_LB, s.topology.balancer.value, 0.0, shutdown_timeout=timeout),) if timeout is not None else ()
    return replace(s, faults=kept + declared)


def images_of(images: ImageSet) -> dict[str, str]:
    """An image set as the state file keeps it: role -> tag ("" for one the set does not have)."""
    return {role: image.tag if isinstance(image := getattr(images, role, None), Image) else "" for role in IMAGE_ROLES}


def image_set(tags: dict[str, str]) -> ImageSet:
    def one(role: str) -> Image | None:
        return Image(tags[role], "as `up` ran it") if tags.get(role) else None

    app, redis, nginx = one("app"), one("redis"), one("nginx")
    if app is None or redis is None or nginx is None:
        raise LabError(f"the state file names no app, redis and nginx images ({tags}); run `python -m labs down`")
    return ImageSet(app=app, redis=redis, nginx=nginx, node=one("node"), nats=one("nats"), haproxy=one("haproxy"))


# -- the stack `up` runs, as a Stack ---------------------------------------------------------------------

def attach(client: docker.DockerClient, live: LiveState, *, timeout: float | None,
           progress: Callable[[str], None]) -> Stack:
    """The running stack as `up` holds it (its spec from the same scenario and images, its containers and
    networks found by the run's label, the replicas serving from the state file), with nginx's config
    rendered with `timeout`. Never entered: its teardown is `up`'s."""
    from ..spec import plan, stack_spec

    s = scenario.load(live.source)
    top = s.topology
    if (top.broker.value, top.app.value, top.balancer.value) != (live.broker, live.app, live.balancer):
        raise LabError(f"{live.source} now describes another stack ({top.app.value}, {top.broker.value}, "
                       f"{top.balancer.value}) than the one up ({live.app}, {live.broker}, {live.balancer}); "
                       f"restore it, or `down` and `up` again")
    spec, _ = stack_spec(client, plan(rendering(s, timeout)), image_set(live.images))
    found = remote.attach(client, live.run_id)
    stack = Stack(client, replace(spec, run_id=live.run_id), progress=progress, containers=found.containers,
                  networks=found.networks, port=live.port, host=live.host)
    stack.client_net = found.networks["front"].attrs["IPAM"]["Config"][0]["Subnet"]
    stack.serving = list(live.replica_names)
    return stack


def connections(stack: Stack, names: list[str]) -> dict[str, int | None]:
    """Each replica's WebSocket connections now, from its /healthz through the balancer (None: no answer)."""
    return {n: view.connected(view.read_healthz(stack.port, n, stack.host)) for n in names}


def total(found: dict[str, int | None]) -> int:
    return sum(v for v in found.values() if v is not None)


def counted(found: dict[str, int | None]) -> str:
    known = [v for v in found.values() if v is not None]
    each = ", ".join(f"{n} {'-' if v is None else v}" for n, v in found.items())
    return f"{sum(known) if known else '-'} ({each})"


# -- one change, step by step -----------------------------------------------------------------------------

class Change:
    """One change's life: the state under its lock, written after every step, and the line that ends it."""

    def __init__(self, box: list[LiveState], progress: Callable[[str], None]) -> None:
        self.box = box
        self.progress = progress
        self.began = time.monotonic()

    @property
    def live(self) -> LiveState:
        return self.box[0]

    def note(self, **changes: object) -> None:
        """Write what runs now; the stack taken down meanwhile (`down`) ends the change."""
        if not self.record(**changes):
            raise StackError(f"stack {self.live.name!r} was taken down during the change")

    def record(self, **changes: object) -> bool:
        """Write what runs now, if the stack is still up (False when `down` removed its state file)."""
        self.box[0] = replace(self.box[0], **changes)  # type: ignore[arg-type]
        return state.save(self.box[0])

    def elapsed(self) -> float:
        return time.monotonic() - self.began


def run(args: argparse.Namespace, command: str, body: Callable[[Change, Stack], str], *, renders: bool,
        timeout: Callable[[LiveState], float | None] = lambda live: live.shutdown_timeout) -> int:
    """Check, attach, then run `body` (which changes the stack step by step); print its last line. A failure
    after the first change is one line and exit 1 (the state file says what runs)."""
    from ..infra.engine import connect_existing

    name = state.check_name(args.name)
    with state.updating(name) as box:
        check_stack(box[0], command, renders=renders)
        client = connect_existing()
        if client is None:
            raise LabError("no Docker engine answers, so the stack is gone; run `python -m labs down`")
        try:
            stack = attach(client, box[0], timeout=timeout(box[0]), progress=print)
            change = Change(box, print)
            try:
                line = body(change, stack)
            except (StackError, docker.errors.APIError) as exc:
                said = exc.explanation if isinstance(exc, docker.errors.APIError) else exc
                change.record(change="", changed=f"{command} failed after {change.elapsed():.1f}s: {said}")
                print(f"wslab: {command} failed after {change.elapsed():.1f}s: {said}; serving now: "
                      f"{', '.join(change.live.replica_names)}", file=sys.stderr)
                return EXIT_FAIL
            except Stopped as exc:
                change.record(change="", changed=str(exc))
                print(exc)
                signals.check()
                raise
            except KeyboardInterrupt:  # between steps, or once the step under way had finished
                change.record(change="", changed=f"{command} interrupted after {change.elapsed():.1f}s")
                print(f"{command} interrupted after {change.elapsed():.1f}s; serving now: "
                      f"{', '.join(change.live.replica_names)}")
                raise
            except Exception as exc:  # the lab's own failure (exit 3): the state still says what serves
                change.record(change="", changed=f"{command} broke off after {change.elapsed():.1f}s: {exc}")
                raise
            change.note(change="", changed=line)
            print(line)
        finally:
            client.close()
    return EXIT_PASS
