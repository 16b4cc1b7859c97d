"""One run, top to bottom: render → up → workload → check → report. Data flows one way."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import docker

from . import workload
from .checker import Validity, Verdict, account, judge
from .images import ImageSet
from .render import for_replicas, render_nginx
from .report import RunResult
from .faults import fault_schedule
from .scenario import AppKind, Broker, FaultKind, Scenario
from .settings import TEMPLATES_DIR
from .stack import Stack, StackSpec


def new_run_id() -> str:
    return secrets.token_hex(4)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def render(scenario: Scenario, *, templates: Path = TEMPLATES_DIR) -> str:
    top = scenario.topology
    return render_nginx(for_replicas(top.replicas, balance=top.balance), templates=templates)


def broker_options(scenario: Scenario) -> dict[str, Any]:
    """Replica and Redis options a scenario needs: streams keep an fsynced append-only file (a restart
    loses nothing) and cap each room's stream at MAXLEN; a slow consumer gets small socket buffers."""
    slow = tuple(f.target for f in scenario.faults if f.kind is FaultKind.SLOW_CONSUMER)
    options: dict[str, Any] = {"small_buffers": slow + ("redis",) if slow else ()}
    if scenario.topology.broker is Broker.REDIS_STREAMS:
        options["app_args"] = ("--maxlen", str(scenario.topology.maxlen))
        options["redis_args"] = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
    return options


def probes(stack: Stack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, int]:
    """What Redis and the replicas say after the run: subscribers per room channel vs replicas that have
    members there (fewer subscribers = a deaf replica), and publishes that reached nobody."""
    out = {"published_to_nobody": sum(r.get("published_to_nobody", 0) for r in replicas.values()),
           "deaf_detected": sum(r.get("deaf_detected", 0) for r in replicas.values())}
    if scenario.topology.broker is Broker.REDIS_PUBSUB:
        channel = f"chat:{scenario.workload.room}"
        out["subscribers"] = int(stack.redis_cli("PUBSUB", "NUMSUB", channel).split()[-1])
        out["replicas_with_members"] = sum(1 for r in replicas.values()
                                           if r.get("rooms", {}).get(scenario.workload.room))
    return out


def execute(client: docker.DockerClient, scenario: Scenario, images: ImageSet, *,
            host_port: int | None = None, templates: Path = TEMPLATES_DIR,
            progress: Callable[[str], None] = lambda line: None) -> RunResult:
    if scenario.topology.app is AppKind.SOCKETIO:
        from .sio_run import execute as execute_socketio

        return execute_socketio(client, scenario, images, host_port=host_port, templates=templates,
                                progress=progress)
    conf = render(scenario, templates=templates)
    run_id = new_run_id()
    spec = StackSpec(run_id=run_id, replicas=scenario.topology.replicas,
                     broker=scenario.topology.broker.value, nginx_conf=conf, images=images,
                     host_port=host_port, **broker_options(scenario))
    progress(f"{scenario.name}: run {run_id}, {scenario.topology.replicas} replica(s), "
             f"broker {scenario.topology.broker.value}")
    replicas: dict[str, Any] = {}
    with Stack(client, spec, progress=progress) as stack:
        during = fault_schedule(stack, scenario.faults)
        history = asyncio.run(workload.run(stack.port, scenario.workload, progress=progress, during=during))
        for name in stack.replica_names():
            replicas[name] = stack.health(name)
        history.probes = probes(stack, scenario, replicas)
        history.broker_events = sorted(((name, t, part, ok) for name, r in replicas.items()
                                        for t, part, ok in r.get("events", [])), key=lambda e: e[1])
        states = stack.states()
        versions = stack.versions()
    try:
        acc = account(history)
        verdict = judge(acc, scenario.expect)
    except Exception as exc:  # a checker that crashes reports "unknown", never "pass"
        acc = account(type(history)())
        verdict = Verdict(Validity.UNKNOWN, (), f"checker failed: {exc!r}")
    return RunResult(
        scenario=scenario, run_id=run_id, stamp=utc_stamp(), accounting=acc, verdict=verdict,
        history=history, nginx_conf=conf,
        images={"app": images.app.source, "redis": images.redis.source, "nginx": images.nginx.source},
        versions=versions, timings={"up": stack.timings.up_s, "down": stack.timings.down_s},
        replicas=replicas, logs=stack.logs, states=states,
    )
