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
from .scenario import Scenario
from .settings import TEMPLATES_DIR
from .stack import Stack, StackSpec


def new_run_id() -> str:
    return secrets.token_hex(4)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def render(scenario: Scenario, *, templates: Path = TEMPLATES_DIR) -> str:
    top = scenario.topology
    return render_nginx(for_replicas(top.replicas, balance=top.balance), templates=templates)


def execute(client: docker.DockerClient, scenario: Scenario, images: ImageSet, *,
            host_port: int | None = None, templates: Path = TEMPLATES_DIR,
            progress: Callable[[str], None] = lambda line: None) -> RunResult:
    conf = render(scenario, templates=templates)
    run_id = new_run_id()
    spec = StackSpec(run_id=run_id, replicas=scenario.topology.replicas,
                     broker=scenario.topology.broker.value, nginx_conf=conf, images=images,
                     host_port=host_port)
    progress(f"{scenario.name}: run {run_id}, {scenario.topology.replicas} replica(s), "
             f"broker {scenario.topology.broker.value}")
    replicas: dict[str, Any] = {}
    with Stack(client, spec, progress=progress) as stack:
        history = asyncio.run(workload.run(stack.port, scenario.workload, progress=progress))
        for name in stack.replica_names():
            replicas[name] = stack.health(name)
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
        replicas=replicas, logs=stack.logs,
    )
