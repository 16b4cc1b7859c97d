"""A scenario as a stack: everything decided before anything starts.

`plan` does what can fail without Docker (the balancer's config renders, the protocol is known, the stack
is sized for the host's open-file limit), so bad input stops a run before anything starts; `stack_spec` then
says which containers a plan runs on, with the broker's options and the run's ids. `runner`, `live` and the
benches all build their stacks here, so every stack's nginx holds `sizing.DEFAULT_CONNECTIONS` WebSockets (or
says how many fewer the host allows).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from .brokers import entry
from .infra import render_haproxy
from .infra.balancers import adapter
from .infra.images import ImageSet
from .infra.nginx_probe import nginx_version
from .infra.render import Sticky, for_names, render_nginx
from .infra.sizing import Sizing, host_file_limit, size_stack
from .infra.stack import Renderer, StackSpec
from .protocols import for_app
from .protocols.base import ProtocolAdapter
from .scenario import Balance, Balancer, FaultKind, Scenario
from .settings import TEMPLATES_DIR

#: an address range for the pre-start render check only (TEST-NET-1, never contacted)
PLACEHOLDER_NET = "192.0.2.0/24"


def new_run_id() -> str:
    return secrets.token_hex(4)


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    protocol: ProtocolAdapter
    templates: Path
    #: how many connections the stack holds and the limits nginx and the containers get for it
    sizing: Sizing


def plan(scenario: Scenario, *, templates: Path = TEMPLATES_DIR, fd_limit: int | None = None) -> Plan:
    """Check, without Docker, that the scenario can run: its stack is sized for `fd_limit` open files per
    process (None: this host's hard limit) and its balancer's config renders from `templates`."""
    sizing = size_stack(scenario.topology.replicas, fd_limit=host_file_limit() if fd_limit is None else fd_limit,
                        balancer=scenario.topology.balancer)
    renderer(scenario, Sticky.MAP, sizing, templates=templates)(PLACEHOLDER_NET)
    if scenario.topology.balance is Balance.COOKIE and scenario.topology.balancer is Balancer.NGINX:
        renderer(scenario, Sticky.NATIVE, sizing, templates=templates)(PLACEHOLDER_NET)
    return Plan(scenario, for_app(scenario.topology.app), templates, sizing)


def shutdown_timeout_ms(scenario: Scenario) -> int | None:
    """nginx's `worker_shutdown_timeout` for the run: the one every reloading fault declares (parse makes
    them agree), in the config from the start, since old workers read it from the config they started with.
    HAProxy's counterpart, `hard-stop-after`, is the topology's `hard_stop_after`."""
    declared = {f.shutdown_timeout for f in scenario.faults if f.kind.reloads_lb and f.shutdown_timeout is not None}
    return max(1, round(declared.pop() * 1000)) if declared else None


def renderer(scenario: Scenario, sticky: Sticky, sizing: Sizing, *, templates: Path = TEMPLATES_DIR) -> Renderer:
    """The balancer's config (nginx's, or HAProxy's with its soft-stop knobs, each sized by `sizing`) as a
    function of the client network (trusted for X-Forwarded-For when clients stand for several /24s; that
    network exists only once the stack made it) and of the replicas it balances over (app-1..N at the start;
    a topology change renders it again with others). `sticky` is how nginx builds cookie stickiness (HAProxy
    has its own)."""
    top, wl = scenario.topology, scenario.workload
    first = tuple(f"app-{i}" for i in range(1, top.replicas + 1))
    timeout = shutdown_timeout_ms(scenario)

    def render(client_net: str, replicas: tuple[str, ...] = first) -> str:
        realip_from = client_net if wl.source_subnets > 1 else None
        if top.balancer is Balancer.HAPROXY:
            return render_haproxy.render_haproxy(render_haproxy.for_names(
                replicas, balance=top.balance, cookie_name=top.cookie_name, realip_from=realip_from,
                hard_stop_after=top.hard_stop_after, close_spread_time=top.close_spread_time,
                maxconn=sizing.haproxy_maxconn), templates=templates)
        config = for_names(replicas, balance=top.balance, cookie_name=top.cookie_name, sticky=sticky,
                           realip_from=realip_from, shutdown_timeout_ms=timeout)
        config = replace(config, workers=sizing.nginx_workers, worker_connections=sizing.worker_connections,
                         worker_rlimit_nofile=sizing.worker_rlimit_nofile, reuseport=True, backlog=sizing.backlog,
                         max_fails=top.max_fails)
        return render_nginx(config, templates=templates)

    return render


def render(scenario: Scenario, *, templates: Path = TEMPLATES_DIR) -> str:
    """The scenario's balancer config, sized for this host (for a stack whose clients need no realip)."""
    p = plan(scenario, templates=templates)
    return renderer(scenario, Sticky.MAP, p.sizing, templates=templates)(PLACEHOLDER_NET)


def sticky_for(client: docker.DockerClient, scenario: Scenario, images: ImageSet) -> tuple[Sticky, str]:
    """How cookie stickiness is rendered for this nginx image, and a line saying so ("" when not cookie);
    HAProxy inserts its own cookie."""
    top = scenario.topology
    if top.balance is not Balance.COOKIE:
        return Sticky.MAP, ""
    if top.balancer is Balancer.HAPROXY:
        return Sticky.MAP, (f"HAProxy's own `cookie {top.cookie_name} insert indirect nocache`: it names the "
                            "server in the cookie it inserts, and a later request carrying it goes to that server")
    version = nginx_version(client, images.nginx.tag)
    sticky = Sticky.for_version(version)
    return sticky, f"nginx {'.'.join(map(str, version))}: {sticky.describe()}"


def broker_options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
    """Broker and container options a scenario needs: its broker's (the registry's: its containers, their
    address for the replicas, how they are formed) and, for a slow consumer, small socket buffers (the
    replica's and the broker's)."""
    broker = scenario.topology.broker
    slow = tuple(f.target for f in scenario.faults if f.kind is FaultKind.SLOW_CONSUMER)
    return {"small_buffers": slow + (broker.container or "redis",) if slow else (),
            **entry(broker).options(scenario, images)}


def stack_spec(client: docker.DockerClient, p: Plan, images: ImageSet, *,
               host_port: int | None = None) -> tuple[StackSpec, str]:
    """The stack a plan runs on (every way of running a scenario builds it here), and the line saying how
    cookie stickiness is built ("" when not cookie)."""
    s, protocol = p.scenario, p.protocol
    sticky, sticky_note = sticky_for(client, s, images)
    balancer = adapter(s.topology.balancer)
    balancer.image(images)  # a missing image stops the run here, before anything starts
    spec = StackSpec(run_id=new_run_id(), replicas=s.topology.replicas, broker=s.topology.broker.value,
                     balancer_conf="", balancer_conf_for=renderer(s, sticky, p.sizing, templates=p.templates),
                     images=images, balancer=balancer, nofile=p.sizing.nofile, backlog=p.sizing.backlog,
                     host_port=host_port, app_module=protocol.app_module, app_args=protocol.replica_args(s),
                     app_command=protocol.replica_command(), app_image=protocol.replica_image(images).tag,
                     graceful_stop=all(f.graceful for f in s.faults if f.kind is FaultKind.ROLLING_RESTART),
                     **broker_options(s, images))
    return spec, sticky_note


def image_sources(s: Scenario, app: str, images: ImageSet) -> dict[str, str]:
    """Where each image of the run came from (the broker's: redis, or nats; the balancer's: nginx or haproxy)."""
    broker = entry(s.topology.broker)
    server = broker.server_image(images)
    balancer = adapter(s.topology.balancer)
    return {"app": app, **({broker.image: server.source} if server else {}), balancer.name: balancer.image(images).source}


def describe(p: Plan, spec: StackSpec, sticky_note: str) -> str:
    top = p.scenario.topology
    return (f"{p.scenario.name}: run {spec.run_id}, {top.replicas} {p.protocol.app.value} replica(s), "
            f"broker {top.broker.value}, {top.balancer.value} balance {top.balance.value}"
            + (f"; cookie stickiness: {sticky_note}" if sticky_note else ""))


