"""One Socket.IO run, top to bottom: render → up → clients ‖ faults → check → report.

The same flow as `runner.execute`, with what a Socket.IO scenario adds: the replicas run
`wslab_app.sio`; cookie stickiness is rendered for the nginx version actually in the image; a realip rule
trusts X-Forwarded-For only from the run's own client network, which exists only once the stack made it.
"""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path
from typing import Any, Callable

import docker

from . import sio_checker, sio_workload
from .checker import Accounting, Validity, Verdict, judge
from .faults import fault_schedule
from .images import ImageSet
from .nginx_probe import nginx_version
from .render import Sticky, for_replicas, render_nginx
from .report import RunResult
from .scenario import Balance, Scenario
from .settings import TEMPLATES_DIR
from .stack import Stack, StackSpec

APP_MODULE = "wslab_app.sio"
#: an address range for the pre-start render check only (TEST-NET-1, never contacted)
PLACEHOLDER_NET = "192.0.2.0/24"
_UNREACHABLE = (OSError, http.client.HTTPException, ValueError)


def sticky_for(client: docker.DockerClient, scenario: Scenario, images: ImageSet) -> tuple[Sticky, str]:
    """How cookie stickiness is rendered for this nginx image, and a line saying so ("" when not cookie)."""
    if scenario.topology.balance is not Balance.COOKIE:
        return Sticky.MAP, ""
    version = nginx_version(client, images.nginx.tag)
    sticky = Sticky.for_version(version)
    return sticky, f"nginx {'.'.join(map(str, version))}: {sticky.describe()}"


def renderer(scenario: Scenario, sticky: Sticky, *, templates: Path = TEMPLATES_DIR) -> Callable[[str], str]:
    """The nginx config as a function of the client network (trusted for X-Forwarded-For when clients
    stand for several /24s)."""
    top, wl = scenario.topology, scenario.workload

    def render(client_net: str) -> str:
        config = for_replicas(top.replicas, balance=top.balance, cookie_name=top.cookie_name, sticky=sticky,
                              realip_from=client_net if wl.source_subnets > 1 else None)
        return render_nginx(config, templates=templates)

    return render


def _health(stack: Stack, name: str) -> dict[str, Any]:
    try:
        return stack.health(name)
    except _UNREACHABLE as exc:  # a killed replica: nginx cannot reach it
        return {"status": None, "error": repr(exc)}


def execute(client: docker.DockerClient, scenario: Scenario, images: ImageSet, *,
            host_port: int | None = None, templates: Path = TEMPLATES_DIR,
            progress: Callable[[str], None] = lambda line: None) -> RunResult:
    from .runner import new_run_id, utc_stamp

    top = scenario.topology
    sticky, sticky_note = sticky_for(client, scenario, images)
    render = renderer(scenario, sticky, templates=templates)
    render(PLACEHOLDER_NET)  # a template or value error stops the run before any container exists
    run_id = new_run_id()
    spec = StackSpec(run_id=run_id, replicas=top.replicas, broker=top.broker.value, nginx_conf="",
                     nginx_conf_for=render, images=images, host_port=host_port, app_module=APP_MODULE)
    progress(f"{scenario.name}: run {run_id}, {top.replicas} Socket.IO replica(s), balance {top.balance.value}, "
             f"manager {top.broker.value}" + (f"; cookie stickiness: {sticky_note}" if sticky_note else ""))
    with Stack(client, spec, progress=progress) as stack:
        during = fault_schedule(stack, scenario.faults)
        history = asyncio.run(sio_workload.run(stack.port, scenario, replicas=list(stack.replica_names()),
                                               during=during, progress=progress))
        replicas = {name: _health(stack, name) for name in stack.replica_names()}
        try:
            versions = stack.versions()
        except _UNREACHABLE as exc:
            versions = {"error": f"versions unavailable: {exc!r}"}
    acc: sio_checker.SioAccounting | None
    try:
        acc = sio_checker.account(history)
        verdict = judge(acc, scenario.expect)
        room = acc.room
    except Exception as exc:  # a checker that crashes reports "unknown", never "pass"
        acc = None
        room = Accounting(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        verdict = Verdict(Validity.UNKNOWN, (), f"checker failed: {exc!r}")
    return RunResult(
        scenario=scenario, run_id=run_id, stamp=utc_stamp(), accounting=room, verdict=verdict,
        # a SioHistory where a History goes: the report only calls its to_dict()
        history=history, nginx_conf=stack.nginx_conf,  # type: ignore[arg-type]
        images={"app": images.app.source, "redis": images.redis.source, "nginx": images.nginx.source},
        versions=versions, timings={"up": stack.timings.up_s, "down": stack.timings.down_s},
        replicas=replicas, logs=stack.logs, socketio=acc, sticky=sticky_note,
    )

