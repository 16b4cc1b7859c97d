"""One run, top to bottom, for every protocol: up -> drive || faults -> check -> report.

The plan and the stack it runs on come from `spec`; data flows one way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import docker

from . import signals, workload
from .accounting.checker import Accounting, account
from .accounting.history import BrokerEvent, History
from .accounting.verdict import Verdict, judge, measures, unknown
from .brokers import entry
from .errors import LabError, RunFailed
from .infra import inspect
from .infra.faults import fault_schedule
from .infra.images import ImageSet
from .infra.launch import open_stack
from .infra.running import RunningStack
from .infra.swarm.nodes import Swarm
from .report.result import RunResult
from .scenario import Metric, Scenario
from .spec import Plan, describe, image_sources, stack_spec, utc_stamp

Progress = Callable[[str], None]


def probes(stack: RunningStack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, Any]:
    """What Redis and the replicas say after the run: which replica has members in how many rooms, how many
    channels Redis says each replica's subscriber holds (fewer than it needs: a deaf replica), publishes
    that reached nobody, (the seed article's Node server) unhandled rejections it survived, and (Redis
    Streams) the first entry each room's stream still holds. A replica that did not answer leaves its
    figures unmeasured (None), never 0."""
    answered = {name: r for name, r in replicas.items() if r.get("status") == 200}
    every = len(answered) == len(replicas)

    def total(key: str) -> int | None:
        return sum(r.get(key, 0) for r in answered.values()) if every else None

    out: dict[str, Any] = {key: total(key) for key in ("published_to_nobody", "deaf_detected", "unhandled_rejections")}
    return {**out, **entry(scenario.topology.broker).probe(stack, scenario, replicas)}


def check(p: Plan, history: History) -> tuple[Accounting | None, dict[Metric, float | None], Verdict]:
    """The accounting, every measured value, and the verdict; a checker that crashes reports unknown, and
    no accounting and no value (nothing it half computed is a figure)."""
    expect = p.scenario.expect
    try:
        acc = account(history)
        values = {**measures(acc), **p.protocol.measures(history, acc),
                  **entry(p.scenario.topology.broker).measures(history)}
        return acc, values, judge(values, expect)
    except Exception as exc:  # noqa: BLE001 - never "pass" on a crash
        return None, {}, unknown(f"checker failed: {exc!r}", expect)


def execute(client: docker.DockerClient, p: Plan, images: ImageSet, *, host_port: int | None = None,
            progress: Progress = lambda line: None,
            on_removed: Callable[[list[str]], None] = lambda names: None, on: Swarm | None = None) -> RunResult:
    s, protocol = p.scenario, p.protocol
    spec, sticky_note = stack_spec(client, p, images, host_port=host_port)
    run_id = spec.run_id
    progress(describe(p, spec, sticky_note))
    with open_stack(client, spec, scenario=s, on=on, progress=progress, on_removed=on_removed) as stack:
        meter = entry(s.topology.broker).meter(stack, s)
        meter.begin()
        try:
            history = workload.drive(stack.port, s, protocol, replicas=stack.replica_names(), host=stack.host,
                                     during=fault_schedule(stack, s.faults), progress=progress,
                                     cancelling=signals.cancelling)
        except asyncio.CancelledError:
            signals.check()
            raise
        except RunFailed:
            raise
        except LabError as exc:  # the stack was up and the clients running: the run failed, not its setup
            raise RunFailed(str(exc)) from exc
        signals.check()
        # every replica that ran: those a scale-out added too (one taken out by a scale-in stays listed)
        history.replicas = list(dict.fromkeys([*history.replicas, *stack.replica_names()]))
        replicas = {name: inspect.health(stack, name) for name in stack.replica_names()}
        history.probes = {**probes(stack, s, replicas), **meter.end()}
        history.broker_events = sorted((BrokerEvent(name, t, part, ok) for name, r in replicas.items()
                                        for t, part, ok in r.get("events", [])), key=lambda e: e.at)
        states = inspect.states(stack)
        versions = inspect.versions(stack, replicas)
        nodes = stack.node_of()
    first_send = min((m.at for m in history.sent), default=0.0)
    swarm_events = [(t - first_send, what) for t, what in stack.events]
    if swarm_events:  # the faults on the same clock, to read what Swarm did against them
        swarm_events += [(f.applied - first_send, f"fault {f.kind} {f.target} applied") for f in history.faults]
        swarm_events += [(f.healed - first_send, f"fault {f.kind} {f.target} healed") for f in history.faults
                         if f.healed is not None]
        swarm_events.sort()
    acc, values, verdict = check(p, history)
    return RunResult(
        scenario=s, protocol=protocol, run_id=run_id, stamp=utc_stamp(), history=history, accounting=acc,
        values=values, verdict=verdict, balancer_conf=stack.balancer_conf, sticky=sticky_note,
        images=image_sources(s, protocol.replica_image(images).source, images),
        versions=versions, timings={"up": stack.timings.up_s, "down": stack.timings.down_s},
        replicas=replicas, logs=stack.logs, states=states, nodes=nodes, swarm_events=swarm_events,
    )
