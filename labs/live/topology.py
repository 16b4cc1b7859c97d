"""`scale N`, `deploy`, `reload`: the live stack's topology changed from another process, by the classes a
scenario's topology faults use (`labs.infra.faults`: ScaleOut, ScaleIn, RollingRestart, ReloadLB), over
the stack `up` runs (`changes.attach`).

A step is a critical section (`signals.deferred`): Ctrl-C or SIGTERM during a scale-out lets the new
replicas become ready and join the upstream, during a deploy lets the replicas of the step under way come
back; the change then stops there, the state file saying what runs.
"""

from __future__ import annotations

import argparse
import time

import docker.errors

from .. import signals
from ..errors import LabError
from ..infra.faults import ReloadLB, RollingRestart, ScaleIn, ScaleOut
from ..infra.operations import Operations
from ..infra.stack import Stack
from ..scenario import ALL_REPLICAS, Fault, FaultKind
from .changes import Change, Stopped, check_deploy, check_scale, check_timeout, connections, counted, run, scaled, total

#: how often a deploy counts the connections while its clients come back (a measurement's sampling period,
#: not a readiness wait)
SAMPLE_S = 0.1


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
            held = connections(stack, [name])[name]  # those of the replicas removed before it came back here too
            with signals.deferred():
                ScaleIn(ops, name, Fault(FaultKind.SCALE_IN, name, 0.0,
                                         shutdown_timeout=change.live.shutdown_timeout)).apply()
                change.note(serving=tuple(stack.replica_names()), replicas=len(stack.replica_names()))
            change.progress(f"{name} out of the upstream and stopped ({'-' if held is None else held} connection(s) "
                            f"closed with 1001)")
        after = connections(stack, stack.replica_names())
        what = f"added {', '.join(added)}" if added else f"removed {', '.join(removed)}"
        return (f"scale to {count}: {what} in {change.elapsed():.1f}s; connections before {counted(before)}, "
                f"now {counted(after)}")

    return run(args, "scale", body, renders=False)  # either balancer renders its servers anew


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
                     Fault(FaultKind.RELOAD_LB, stack.balancer.name, 0.0, shutdown_timeout=old)).apply()
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
