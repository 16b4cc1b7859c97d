"""One run, top to bottom, for every protocol: render -> up -> drive || faults -> check -> report.

`plan` does everything that can fail without Docker (the nginx config renders, the protocol is known),
so bad input stops a run before anything starts. `execute` then runs it; data flows one way.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import docker

from . import signals, workload
from .accounting.checker import Accounting, account
from .accounting.cluster import cluster_measures
from .accounting.history import BrokerEvent, History
from .accounting.verdict import Verdict, judge, measures, unknown
from .errors import ImageError, LabError, RunFailed
from .infra import inspect, redis_cluster
from .infra.faults import fault_schedule
from .infra.images import ImageSet
from .infra.nginx_probe import nginx_version
from .infra.render import Sticky, for_replicas, render_nginx
from .infra.stack import NATS_URL, Stack, StackSpec, nats_backend
from .protocols import for_app
from .protocols.base import ProtocolAdapter
from .report.result import RunResult
from .scenario import Balance, Broker, FaultKind, Metric, Scenario

if TYPE_CHECKING:
    from .infra.cluster import Cluster
from .settings import TEMPLATES_DIR

#: an address range for the pre-start render check only (TEST-NET-1, never contacted)
PLACEHOLDER_NET = "192.0.2.0/24"
Progress = Callable[[str], None]
#: nats-server's limit for a slow-consumer scenario: it closes a connection whose write blocked for 1 s (10 s
#: by default). Not a small max_pending: nats-server 2.9 first stalls the publishers of a consumer past half
#: of it (up to 1 s each time), so a frozen consumer's backlog only trickles in, and a JetStream consumer
#: catching up after the fault bursts past it again and again (each time cut off, each time restarted).
NATS_SLOW = {"write_deadline": 1.0}


def new_run_id() -> str:
    return secrets.token_hex(4)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    protocol: ProtocolAdapter
    templates: Path


def plan(scenario: Scenario, *, templates: Path = TEMPLATES_DIR) -> Plan:
    """Check, without Docker, that the scenario can run: its nginx config renders from `templates`."""
    renderer(scenario, Sticky.MAP, templates=templates)(PLACEHOLDER_NET)
    if scenario.topology.balance is Balance.COOKIE:
        renderer(scenario, Sticky.NATIVE, templates=templates)(PLACEHOLDER_NET)
    return Plan(scenario, for_app(scenario.topology.app), templates)


def renderer(scenario: Scenario, sticky: Sticky, *, templates: Path = TEMPLATES_DIR) -> Callable[[str], str]:
    """The nginx config as a function of the client network (trusted for X-Forwarded-For when clients
    stand for several /24s; that network exists only once the stack made it)."""
    top, wl = scenario.topology, scenario.workload

    def render(client_net: str) -> str:
        config = for_replicas(top.replicas, balance=top.balance, cookie_name=top.cookie_name, sticky=sticky,
                              realip_from=client_net if wl.source_subnets > 1 else None)
        return render_nginx(config, templates=templates)

    return render


def render(scenario: Scenario, *, templates: Path = TEMPLATES_DIR) -> str:
    """The scenario's nginx config (for a stack whose clients need no realip)."""
    return renderer(scenario, Sticky.MAP, templates=templates)(PLACEHOLDER_NET)


def sticky_for(client: docker.DockerClient, scenario: Scenario, images: ImageSet) -> tuple[Sticky, str]:
    """How cookie stickiness is rendered for this nginx image, and a line saying so ("" when not cookie)."""
    if scenario.topology.balance is not Balance.COOKIE:
        return Sticky.MAP, ""
    version = nginx_version(client, images.nginx.tag)
    sticky = Sticky.for_version(version)
    return sticky, f"nginx {'.'.join(map(str, version))}: {sticky.describe()}"


def broker_options(scenario: Scenario, images: ImageSet | None = None) -> dict[str, Any]:
    """Broker and container options a scenario needs: streams keep an fsynced append-only file (a restart
    loses nothing); NATS runs nats-server instead of Redis (JetStream with its store under /tmp); a slow
    consumer gets small socket buffers (the replica's and the broker's) and, with NATS, a server that
    closes a connection it cannot write to soon (NATS_SLOW)."""
    broker = scenario.topology.broker
    slow = tuple(f.target for f in scenario.faults if f.kind is FaultKind.SLOW_CONSUMER)
    options: dict[str, Any] = {"small_buffers": slow + (broker.container or "redis",) if slow else ()}
    if broker is Broker.REDIS_STREAMS:
        options["redis_args"] = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
    if broker in {Broker.NATS, Broker.NATS_JETSTREAM}:
        if images is None or images.nats is None:
            raise ImageError("no image with nats-server: run `make images`")
        limits: dict[str, Any] = NATS_SLOW if slow else {}
        options["backends"] = (nats_backend(images.nats.tag, jetstream=broker is Broker.NATS_JETSTREAM, **limits),)
        options["broker_url"] = NATS_URL
    return options


def cluster_options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
    """A Redis Cluster broker's nodes, the masters' URLs for the replicas, and the formation step."""
    top = scenario.topology
    if not top.broker.cluster:
        return {}
    return {"backends": redis_cluster.cluster_backends(images.redis.tag, top.cluster_masters, top.cluster_replicas),
            "broker_url": redis_cluster.broker_url(top.cluster_masters),
            "form": redis_cluster.Former(top.cluster_masters, top.cluster_replicas)}


def probes(stack: Stack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, Any]:
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
    broker = scenario.topology.broker
    if broker is Broker.REDIS_PUBSUB and "redis" in stack.containers:
        out["members"] = {name: sum(1 for n in r.get("rooms", {}).values() if n) if name in answered else None
                          for name, r in replicas.items()}
        out["subscriptions"] = inspect.pubsub_subscriptions(stack)
    if broker is Broker.REDIS_STREAMS and "redis" in stack.containers:
        rooms = sorted({scenario.workload.room_for(i) for i in range(scenario.workload.clients)})
        out["stream_first_seq"] = inspect.stream_first_seq(stack, rooms)
    return out


def check(p: Plan, history: History) -> tuple[Accounting | None, dict[Metric, float | None], Verdict]:
    """The accounting, every measured value, and the verdict; a checker that crashes reports unknown, and
    no accounting and no value (nothing it half computed is a figure)."""
    expect = p.scenario.expect
    try:
        acc = account(history)
        values = {**measures(acc), **p.protocol.measures(history, acc)}
        if p.scenario.topology.broker.cluster:
            values.update(cluster_measures(history))
        return acc, values, judge(values, expect)
    except Exception as exc:  # noqa: BLE001 - never "pass" on a crash
        return None, {}, unknown(f"checker failed: {exc!r}", expect)


def stack_spec(client: docker.DockerClient, p: Plan, images: ImageSet, *,
               host_port: int | None = None) -> tuple[StackSpec, str]:
    """The stack a plan runs on (every way of running a scenario builds it here), and the line saying how
    cookie stickiness is built ("" when not cookie)."""
    s, protocol = p.scenario, p.protocol
    sticky, sticky_note = sticky_for(client, s, images)
    spec = StackSpec(run_id=new_run_id(), replicas=s.topology.replicas, broker=s.topology.broker.value,
                     nginx_conf="", nginx_conf_for=renderer(s, sticky, templates=p.templates), images=images,
                     host_port=host_port, app_module=protocol.app_module, app_args=protocol.replica_args(s),
                     app_command=protocol.replica_command(), app_image=protocol.replica_image(images).tag,
                     **broker_options(s, images), **cluster_options(s, images))
    return spec, sticky_note


def image_sources(s: Scenario, app: str, images: ImageSet) -> dict[str, str]:
    """Where each image of the run came from (the broker's: redis, or nats)."""
    out = {"app": app, "redis": images.redis.source, "nginx": images.nginx.source}
    if s.topology.broker.container == "nats" and images.nats is not None:
        del out["redis"]
        out["nats"] = images.nats.source
    return out


def describe(p: Plan, spec: StackSpec, sticky_note: str) -> str:
    top = p.scenario.topology
    return (f"{p.scenario.name}: run {spec.run_id}, {top.replicas} {p.protocol.app.value} replica(s), "
            f"broker {top.broker.value}, balance {top.balance.value}"
            + (f"; cookie stickiness: {sticky_note}" if sticky_note else ""))


def open_stack(client: docker.DockerClient, p: Plan, spec: StackSpec, *, progress: Progress,
               on_removed: Callable[[list[str]], None], on: "Cluster | None" = None) -> Stack:
    """The engine the scenario runs on: one Docker engine, or a Swarm (its [swarm] table): `on`, else the
    owner's recorded cluster (`cluster up` or `cluster use`)."""
    swarm = p.scenario.swarm
    if swarm is None:
        return Stack(client, spec, progress=progress, on_removed=on_removed)
    from .infra import cluster
    from .infra.swarm_stack import SwarmStack

    local = on or cluster.require(swarm.nodes)
    for f in p.scenario.faults:
        if f.kind in {FaultKind.KILL_NODE, FaultKind.PARTITION_NODE}:
            cluster.local_only(local, f.kind.value)
    cluster.ensure_images(local, {spec.app_image or spec.images.app.tag, spec.images.redis.tag,
                                  spec.images.nginx.tag}, client, progress)
    progress(f"on the {'' if local.remote else 'local '}Swarm: "
             f"{', '.join(f'{n.name} {n.swarm_name} {n.address}' for n in local.nodes)}")
    manager = cluster.node_client(local.manager)
    stack = SwarmStack(manager, spec, local, {"nginx": swarm.nginx_node, "redis": swarm.broker_node},
                       spread=swarm.nodes, progress=progress, on_removed=on_removed)
    return stack  # type: ignore[return-value]  # the same interface: containers, networks, host, port


def execute(client: docker.DockerClient, p: Plan, images: ImageSet, *, host_port: int | None = None,
            progress: Progress = lambda line: None,
            on_removed: Callable[[list[str]], None] = lambda names: None, on: "Cluster | None" = None) -> RunResult:
    s, protocol = p.scenario, p.protocol
    spec, sticky_note = stack_spec(client, p, images, host_port=host_port)
    run_id = spec.run_id
    progress(describe(p, spec, sticky_note))
    with open_stack(client, p, spec, progress=progress, on_removed=on_removed, on=on) as stack:
        meter = None
        if s.topology.broker.cluster:
            meter = redis_cluster.Meter(stack, redis_cluster.node_names(s.topology.cluster_masters, s.topology.cluster_replicas))
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
        replicas = {name: inspect.health(stack, name) for name in stack.replica_names()}
        history.probes = probes(stack, s, replicas)
        if meter is not None:
            history.probes["cluster"] = meter.end()
        history.broker_events = sorted((BrokerEvent(name, t, part, ok) for name, r in replicas.items()
                                        for t, part, ok in r.get("events", [])), key=lambda e: e.at)
        states = inspect.states(stack)
        versions = inspect.versions(stack, replicas)
        nodes = stack.node_of()
    first_send = min((m.at for m in history.sent), default=0.0)
    swarm_events = [(t - first_send, what) for t, what in getattr(stack, "events", [])]
    if swarm_events:  # the faults on the same clock, to read what Swarm did against them
        swarm_events += [(f.applied - first_send, f"fault {f.kind} {f.target} applied") for f in history.faults]
        swarm_events += [(f.healed - first_send, f"fault {f.kind} {f.target} healed") for f in history.faults
                         if f.healed is not None]
        swarm_events.sort()
    acc, values, verdict = check(p, history)
    return RunResult(
        scenario=s, protocol=protocol, run_id=run_id, stamp=utc_stamp(), history=history, accounting=acc,
        values=values, verdict=verdict, nginx_conf=stack.nginx_conf, sticky=sticky_note,
        images=image_sources(s, protocol.replica_image(images).source, images),
        versions=versions, timings={"up": stack.timings.up_s, "down": stack.timings.down_s},
        replicas=replicas, logs=stack.logs, states=states, nodes=nodes, swarm_events=swarm_events,
    )
