"""`up`, `down`, `fault`, `heal`: a scenario's stack kept running for a live demonstration (`scale`,
`deploy` and `reload` change its topology: labs.live.topology).

`up` builds the stack exactly as `run` does (spec.plan, spec.stack_spec, launch.open_stack: on a Swarm
when the scenario has a [swarm] table), prints the URLs and shows the live view until Ctrl-C or SIGTERM;
the stack removes everything on every exit path, a crash of the view included. `down` asks that process
to stop (SIGTERM), waits for it, then removes whatever still carries the run's label. `fault` and `heal` act on the containers by label.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from .. import scenario, signals
from ..errors import LabError
from ..infra import inspect
from ..infra.balancers import LISTEN_PORT
from ..infra.launch import open_stack
from ..infra.running import RunningStack
from ..infra.sizing import FILES_PER_CONNECTION, Sizing
from ..infra.usage import docker_proxies
from ..scenario import Balancer
from ..settings import LABEL, OWNER
from . import remote, state, view
from .changes import images_of
from .state import LiveState

#: the live view reads the stack this often (seconds)
REFRESH_S = 1.0
#: where a stack on this engine publishes nginx
LOCAL = "127.0.0.1"
#: how long `down` waits for the `up` process to remove its stack before it removes by label itself
DOWN_TIMEOUT_S = 60.0
Progress = Callable[[str], None]


def up(args: argparse.Namespace, *, setup: Callable[[Progress], Any], progress: Progress,
       on_removed: Callable[[list[str]], None]) -> int:
    """Start the scenario's stack, print its URLs, show the live view until Ctrl-C, SIGTERM or `down`."""
    from ..spec import describe, plan, shutdown_timeout_ms, stack_spec

    name = state.check_name(args.name)
    if args.port is not None and not 1024 <= args.port <= 65535:
        raise LabError(f"--port {args.port} is out of range 1024..65535")
    p = plan(scenario.load(args.scenario))
    top = p.scenario.topology
    pid = os.getpid()
    timeout = shutdown_timeout_ms(p.scenario)
    state.claim(LiveState(name=name, scenario=p.scenario.name, pid=pid, pid_start=state.process_start(pid),
                          replicas=top.replicas, broker=top.broker.value, app=top.app.value,
                          source=str(Path(args.scenario).resolve()) if args.scenario.endswith(".toml") else args.scenario,
                          balancer=top.balancer.value, owner=OWNER, highest=top.replicas,
                          shutdown_timeout=None if timeout is None else timeout / 1000))
    # A demo's terminal may be closed instead of Ctrl-C'd: its SIGHUP gets the SIGTERM treatment (the one
    # handler in labs.signals), so the stack is removed rather than left running without its `up`.
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))
    try:
        client, images = setup(progress)
        try:
            spec, sticky_note = stack_spec(client, p, images, host_port=args.port)
            _update(name, run_id=spec.run_id, images=images_of(images))
            progress(describe(p, spec, sticky_note))
            with open_stack(client, spec, scenario=p.scenario, progress=progress, on_removed=on_removed) as stack:
                live = _update(name, port=stack.port, host=stack.host)
                print(urls(live), flush=True)
                if stack.host == LOCAL and stack.balancer.kind is Balancer.NGINX:
                    print(load_line(stack, p.sizing, proxied=bool(docker_proxies([stack.port]))), flush=True)
                watch(stack, name)
        finally:
            client.close()
    finally:
        state.release(name, pid)
    return 0  # not reached: the view runs until a signal


def _update(name: str, **changes: Any) -> LiveState:
    with state.updating(name) as box:
        box[0] = replace(box[0], **changes)
        return box[0]


def urls(live: LiveState) -> str:
    flag = "" if live.name == state.DEFAULT_NAME else f" --name {live.name}"
    lines = [f"chat page:  {live.url()}   (open it in two tabs: each shows its replica)"]
    lines += [f"{f'app-{i} health:':<12}{live.url(f'/_lab/app-{i}/healthz')}" for i in range(1, live.replicas + 1)]
    lines += [f"faults:     python -m labs fault KIND TARGET{flag}   then   python -m labs heal{flag}",
              f"changes:    python -m labs scale N{flag}   deploy{flag}   reload{flag}",
              f"stop:       Ctrl-C here, or python -m labs down{flag}"]
    return "\n".join(lines)


def load_line(stack: RunningStack, sizing: Sizing, *, proxied: bool) -> str:
    """Where a load tool on this host reaches nginx itself, and what each way in holds. The published port
    holds as much unless a docker-proxy process carries it (`proxied`: an engine started with its userland
    proxy), which holds 6 files per connection (labs/infra/sizing.py)."""
    held = f"{sizing.connections:,}" + (f" of {sizing.wanted:,}" if sizing.reduced else "")
    if proxied:
        way = f"the 127.0.0.1 port passes docker-proxy, ~{sizing.fd_limit // FILES_PER_CONNECTION['proxy']:,}"
    else:
        way = "the 127.0.0.1 port too: no docker-proxy on it"
    return (f"load tools: ws://{inspect.address(stack, 'nginx', 'front')}:{LISTEN_PORT}/ws   (nginx itself: holds "
            f"{held} connections; {way})")


def watch(stack: RunningStack, name: str) -> None:
    """Poll and redraw about every second until a signal (raised by `signals`) ends it. Redis is read from
    this host at its address on the back network: a bridge of this engine (a Swarm's overlay is not
    reachable from the host: there the view shows the replicas only)."""
    console = Console()
    probe = view.BrokerProbe(stack) if "redis" in stack.containers and stack.host == LOCAL else None
    with ThreadPoolExecutor(max_workers=4) as pool, Live(console=console, auto_refresh=False) as live:
        while True:
            tick = time.monotonic()
            current = state.read(name)
            if current is None:
                raise LabError(f"the state file of stack {name!r} was removed; removing the stack")
            snap = view.poll(stack, pool, probe, list(current.replica_names))
            live.update(view.render(current, snap), refresh=True)
            signals.check()
            time.sleep(max(0.0, tick + REFRESH_S - time.monotonic()))  # the refresh period, not a readiness wait


def down(args: argparse.Namespace) -> int:
    """Stop the `up` process (it removes its stack), then remove anything still labelled with its run."""
    from ..infra.engine import connect_existing
    from ..infra.stack import remove_leftovers

    name = state.check_name(args.name)
    live = state.read(name)
    if live is None:
        print(f"nothing is up (no stack named {name!r}); nothing to remove")
        return 0
    if state.alive(live.pid, live.pid_start) and live.pid != os.getpid():
        os.kill(live.pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while state.alive(live.pid, live.pid_start):
            if time.monotonic() > deadline:
                raise LabError(f"`up` (pid {live.pid}) did not stop within {DOWN_TIMEOUT_S:.0f}s; "
                               f"stop it with `kill -TERM {live.pid}`, then run `python -m labs down` again")
            time.sleep(0.05)
    containers = networks = 0
    left: tuple[int, int] = (0, 0)
    client = connect_existing()
    if client is not None and live.run_id:
        try:
            with signals.deferred():
                containers, networks = remove_leftovers(client, live.run_id)
            selector = {"label": f"{LABEL}={live.run_id}"}
            left = (len(client.containers.list(all=True, filters=selector, sparse=True)),
                    len(client.networks.list(filters=selector)))
        finally:
            client.close()
    state.forget(name)
    swept = f"; removed {containers} container(s) and {networks} network(s) it had left" if containers or networks else ""
    print(f"stack {name!r} ({live.scenario}, run {live.run_id or '-'}) is down{swept}; "
          f"{left[0]} container(s) and {left[1]} network(s) with its label remain")
    return 0 if left == (0, 0) else 1


def fault(args: argparse.Namespace) -> int:
    """Apply one fault kind to one target of the live stack; `heal` undoes it."""
    kind = remote.check_kind(args.kind)
    name = state.check_name(args.name)
    with state.updating(name) as box:
        live = box[0]
        if not live.ready:
            raise LabError(f"stack {name!r} is still starting; run the command again once `up` prints its URLs")
        remote.check_target(kind, args.target, live)
        _one_engine(live)
        stack = _attach(live)
        with signals.deferred():
            applied = remote.apply(stack, kind, args.target)
        if remote.lasting(kind):
            box[0] = state.with_fault(live, applied)
    flag = "" if name == state.DEFAULT_NAME else f" --name {name}"
    print(f"{kind.value} applied to {args.target}; " + (f"`python -m labs heal{flag}` undoes it"
                                                      if remote.lasting(kind) else "it happens once: nothing to heal"))
    return 0


def heal(args: argparse.Namespace) -> int:
    """Undo every fault applied to the live stack, the last first."""
    name = state.check_name(args.name)
    failures: list[str] = []
    with state.updating(name) as box:
        live = box[0]
        if not live.faults:
            print(f"no fault is applied to stack {name!r}; nothing to heal")
            return 0
        _one_engine(live)
        stack = _attach(live)
        remaining = list(live.faults)
        for applied in reversed(live.faults):
            try:
                with signals.deferred():
                    remote.heal(stack, applied)
            except LabError as exc:
                failures.append(str(exc))
                continue
            remaining.remove(applied)
            print(f"healed {applied.kind} on {applied.target}")
        box[0] = replace(live, faults=tuple(remaining))
    if failures:
        raise LabError("; ".join(failures))
    return 0


def _one_engine(live: LiveState) -> None:
    """`fault` and `heal` find the containers on this host's engine; a Swarm runs them on its nodes."""
    if live.host != LOCAL:
        raise LabError(f"stack {live.name!r} runs on a Swarm (nginx on {live.host}:{live.port}): `fault` and "
                       "`heal` act on a stack on this engine; a scenario's [[faults]] run on a Swarm with `run`")


def _attach(live: LiveState) -> remote.Attached:
    from ..infra.engine import connect_existing

    client = connect_existing()
    if client is None:
        raise LabError("no Docker engine answers, so the stack is gone; run `python -m labs down`")
    return remote.attach(client, live.run_id)
