"""`scale N`, `deploy`, `reload`: the live stack's topology changed from another process, by the classes a
scenario's topology faults use (`labs.infra.faults`: ScaleOut, ScaleIn, RollingRestart, ReloadLB).

The stack is found by its run's label, and what a change needs besides its containers (the balancer's
config for a set of replicas, a replica made as the others were) comes from the scenario `up` ran, with the
images it ran (both in the state file): `attach` builds the same `Stack` that `up` holds, over the
containers that run, so a new replica is made by the one code that makes replicas, with the run's labels.

Each change holds the state file's lock from the first check to the last write (a `fault`, `heal` or
another change waits), and writes the replicas serving after each step, so the live view follows it and a
later command starts from what runs. A step is a critical section (`signals.deferred`): Ctrl-C or SIGTERM
during a scale-out lets the new replicas become ready and join the upstream, during a deploy lets the
replicas of the step under way come back; the change then stops there, the state file saying what runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import docker
import docker.errors

from .. import scenario, signals
from ..console import EXIT_FAIL, EXIT_PASS
from ..errors import LabError, StackError
from ..infra.faults import ReloadLB, RollingRestart, ScaleIn, ScaleOut
from ..infra.images import Image, ImageSet
from ..infra.operations import Operations
from ..infra.stack import Stack
from ..scenario import (
    ALL_REPLICAS,
    LB_CONTAINER,
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
#: how often it counts them meanwhile (a measurement's sampling period, not a readiness wait)
SAMPLE_S = 0.1


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
    labelling as `up` did, no fault applied; `renders` (a new upstream) needs nginx."""
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
        raise LabError(f"`{command}` renders the upstream of nginx; stack {live.name!r} runs {live.balancer} "
                       f"(`deploy`, and `reload` without --shutdown-timeout, run on it)")
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
    declared = (Fault(FaultKind.RELOAD_LB, LB_CONTAINER, 0.0, shutdown_timeout=timeout),) if timeout is not None else ()
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


def wait_back(stack: Stack, names: list[str], before: int, window: float) -> tuple[dict[str, int | None], float | None]:
    """Count the replicas' connections until they hold `before` again, for at most `window` seconds: what
    they hold then, and after how long (None: not within the window)."""
    began = time.monotonic()
    while True:
        found = connections(stack, names)
        if total(found) >= before:
            return found, time.monotonic() - began
        if time.monotonic() - began >= window:
            return found, None
        time.sleep(SAMPLE_S)


def back_text(before: int, found: dict[str, int | None], after: float | None, window: float) -> str:
    """How many of the connections there were before a change are back, and when."""
    if before == 0:
        return f"no connection before it; now {counted(found)}"
    if after is not None:
        return f"all {before} back {after:.1f}s after the last was ready: {counted(found)}"
    return f"{total(found)} of {before} back within {window:g}s of the last being ready: {counted(found)}"


def counted(found: dict[str, int | None]) -> str:
    known = [v for v in found.values() if v is not None]
    each = ", ".join(f"{n} {'-' if v is None else v}" for n, v in found.items())
    return f"{sum(known) if known else '-'} ({each})"


# -- the commands ----------------------------------------------------------------------------------------

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
        self.box[0] = replace(self.box[0], **changes)  # type: ignore[arg-type]
        if not state.save(self.box[0]):
            raise StackError(f"stack {self.live.name!r} was taken down during the change")

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
                change.note(change="", changed=f"{command} failed after {change.elapsed():.1f}s: {said}")
                print(f"wslab: {command} failed after {change.elapsed():.1f}s: {said}; serving now: "
                      f"{', '.join(change.live.replica_names)}")
                return EXIT_FAIL
            except Stopped as exc:
                change.note(change="", changed=str(exc))
                print(exc)
                signals.check()
                raise
            except KeyboardInterrupt:  # between steps, or once the step under way had finished
                change.note(change="", changed=f"{command} interrupted after {change.elapsed():.1f}s")
                print(f"{command} interrupted after {change.elapsed():.1f}s; serving now: "
                      f"{', '.join(change.live.replica_names)}")
                raise
            change.note(change="", changed=line)
            print(line)
        finally:
            client.close()
    return EXIT_PASS


def scale(args: argparse.Namespace) -> int:
    """Scale the live stack to N replicas: a scale-out starts the new ones (the next numbers) and reloads
    nginx with them once they are ready; a scale-in takes the newest out, one at a time (a reload without
    it, then SIGTERM: its clients get 1001 and come back through the others)."""
    count = check_scale(args.count)

    def body(change: Change, stack: Stack) -> str:
        added, removed = scaled(change.live, count)
        if not added and not removed:
            return f"stack {change.live.name!r} runs {count} replica(s) already: nothing to do"
        ops = stack.operations()
        before = connections(stack, list(change.live.replica_names))
        if added:
            change.note(change=f"scale-out: starting {', '.join(added)}", highest=change.live.last_number + len(added))
            with signals.deferred():
                action = ScaleOut(ops, added[0], Fault(FaultKind.SCALE_OUT, added[0], 0.0, count=len(added),
                                                       shutdown_timeout=change.live.shutdown_timeout))
                try:
                    action.apply()
                except BaseException:
                    undo(ops, stack, added)
                    raise
                change.note(serving=tuple(stack.replica_names()), replicas=len(stack.replica_names()))
        for name in removed:
            change.note(change=f"scale-in: draining {name}")
            with signals.deferred():
                ScaleIn(ops, name, Fault(FaultKind.SCALE_IN, name, 0.0,
                                         shutdown_timeout=change.live.shutdown_timeout)).apply()
                change.note(serving=tuple(stack.replica_names()), replicas=len(stack.replica_names()))
            change.progress(f"{name} out of the upstream and stopped ({before.get(name) or 0} connection(s) closed "
                            f"with 1001)")
        after = connections(stack, stack.replica_names())
        what = f"added {', '.join(added)}" if added else f"removed {', '.join(removed)}"
        return (f"scale to {count}: {what} in {change.elapsed():.1f}s; connections before {counted(before)}, "
                f"now {counted(after)}")

    return run(args, "scale", body, renders=True)


def undo(ops: Operations, stack: Stack, added: list[str]) -> None:
    """A scale-out that failed half-way: the new replicas that run are stopped (none joined the upstream:
    that reload is its last step)."""
    for name in added:
        if name in stack.containers and name not in stack.replica_names():
            try:
                ops.stop(name)
            except docker.errors.APIError:
                pass


class Stepwise(Operations):
    """A rolling restart's operations, step by step: before a step's first stop (no replica down), the pause
    between steps, and a signal received meanwhile stops the deploy there (`Stopped`); once a step began,
    its replicas come back first (the caller holds `signals.deferred`). Each stop and each ready is written
    to the state file."""

    def __init__(self, stack: Stack, change: Change, *, pause: float, steps: int) -> None:
        super().__init__(stack, stack, stack.balancer)
        self.running = stack
        self.change, self.between, self.steps = change, pause, steps
        self.down: dict[str, float] = {}
        self.replaced: list[str] = []
        self.step = 0
        self.dropped = 0

    def _begin(self, name: str) -> None:
        if not self.down:
            if self.step:  # the pause between two steps, cut short by a signal
                until = time.monotonic() + self.between
                while signals.pending() is None and time.monotonic() < until:
                    time.sleep(min(0.05, max(0.0, until - time.monotonic())))
            if signals.pending() is not None:
                left = [n for n in self.change.live.replica_names if n not in self.replaced]
                raise Stopped(f"deploy stopped after {len(self.replaced)} replica(s) "
                              f"({', '.join(self.replaced) or 'none'}): {', '.join(left)} not replaced; every "
                              f"replica runs")
            self.step += 1
        self.dropped += connections(self.running, [name])[name] or 0
        self.down[name] = time.monotonic()
        self.change.note(change=f"deploy step {self.step} of {self.steps}: {', '.join(self.down)} restarting")

    def stop(self, name: str, timeout: int = 5) -> None:
        self._begin(name)
        super().stop(name, timeout)

    def kill(self, name: str) -> None:
        self._begin(name)
        super().kill(name)

    def wait_replica(self, name: str) -> None:
        super().wait_replica(name)
        took = time.monotonic() - self.down.pop(name)
        self.replaced.append(name)
        self.change.progress(f"{name} replaced: ready {took:.2f}s after its stop")
        self.change.note(change=f"deploy step {self.step} of {self.steps}: {', '.join(self.down) or 'done'}")


def deploy(args: argparse.Namespace) -> int:
    """A rolling restart of every serving replica, `--max-unavailable` at a time, `--pause` seconds between
    steps: SIGTERM and wait for the exit (--graceful: its clients get 1001) or SIGKILL (--kill), start it
    again, wait until it is ready."""
    check_deploy(args.max_unavailable, args.pause, args.settle)

    def body(change: Change, stack: Stack) -> str:
        names = list(change.live.replica_names)
        if args.max_unavailable > len(names):
            raise LabError(f"--max-unavailable {args.max_unavailable}: the stack has {len(names)} replica(s)")
        steps = -(-len(names) // args.max_unavailable)
        ops = Stepwise(stack, change, pause=args.pause, steps=steps)
        fault = Fault(FaultKind.ROLLING_RESTART, ALL_REPLICAS, 0.0, graceful=args.graceful,
                      max_unavailable=args.max_unavailable)
        before = total(connections(stack, names))
        with signals.deferred():
            RollingRestart(ops, ALL_REPLICAS, fault).apply()
        took = change.elapsed()
        found, after = wait_back(stack, names, before, args.settle)
        how = "SIGTERM (clients get 1001)" if args.graceful else "SIGKILL"
        return (f"deploy: {len(names)} replica(s) replaced in {took:.1f}s, {args.max_unavailable} at a time, {how}; "
                f"{ops.dropped} connection(s) dropped; {back_text(before, found, after, args.settle)}")

    return run(args, "deploy", body, renders=False)


def reload(args: argparse.Namespace) -> int:
    """Reload the balancer with the same upstream while WebSockets are open. nginx's old workers keep the
    worker_shutdown_timeout of the config they started with: --shutdown-timeout T writes T into the new
    config, which the reload after this one applies."""
    check_timeout(args.shutdown_timeout)

    def body(change: Change, stack: Stack) -> str:
        old = change.live.shutdown_timeout
        names = list(change.live.replica_names)
        before = connections(stack, names)
        change.note(change=f"reloading {stack.balancer.name}")
        with signals.deferred():
            ReloadLB(stack.operations(), stack.balancer.name,
                     Fault(FaultKind.RELOAD_LB, LB_CONTAINER, 0.0, shutdown_timeout=old)).apply()
            if args.shutdown_timeout is not None:
                change.note(shutdown_timeout=args.shutdown_timeout)
        after = connections(stack, names)
        retired = (f"its old workers ran with worker_shutdown_timeout {old:g}s and are gone" if old is not None
                   else "its old workers hold their connections until those close (no worker_shutdown_timeout)")
        if stack.balancer.name != "nginx":
            retired = "its old worker stops softly"
        new = ("" if args.shutdown_timeout is None else
               f"; the new config has worker_shutdown_timeout {args.shutdown_timeout:g}s (the next reload cuts after it)")
        return (f"{stack.balancer.name} reloaded in {change.elapsed():.1f}s; {retired}; connections before "
                f"{counted(before)}, now {counted(after)}{new}")

    return run(args, "reload", body, renders=args.shutdown_timeout is not None,
               timeout=lambda live: live.shutdown_timeout if args.shutdown_timeout is None else args.shutdown_timeout)
