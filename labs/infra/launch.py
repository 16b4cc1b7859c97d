"""The one way a stack is opened, for `run`, `up`, the benches and the tests: on one Docker engine, or on a
Swarm when the scenario has a [swarm] table."""

from __future__ import annotations

from collections.abc import Callable

import docker

from ..scenario import FaultKind, Scenario
from .running import RunningStack
from .stack import Stack, StackSpec
from .swarm import nodes
from .swarm.stack import SwarmStack

Progress = Callable[[str], None]


def open_stack(client: docker.DockerClient, spec: StackSpec, *, scenario: Scenario | None = None,
               on: nodes.Swarm | None = None, progress: Progress = lambda line: None,
               on_removed: Callable[[list[str]], None] = lambda names: None) -> RunningStack:
    """The stack `spec` describes, not started yet (`with open_stack(...) as stack:` starts it).

    One engine (`client`'s), unless `scenario` has a [swarm] table: then the Swarm `on`, else the owner's
    recorded one (`swarm up` or `swarm use`), with the images loaded into its nodes first. A node fault on a
    Swarm the lab did not build is refused here, before anything starts."""
    if scenario is None or scenario.swarm is None:
        return Stack(client, spec, progress=progress, on_removed=on_removed)
    table = scenario.swarm
    swarm = on or nodes.require(table.nodes)
    for f in scenario.faults:
        if f.kind in {FaultKind.KILL_NODE, FaultKind.PARTITION_NODE}:
            nodes.local_only(swarm, f.kind.value)
    nodes.ensure_images(swarm, {spec.app_image or spec.images.app.tag, spec.images.redis.tag,
                                spec.images.nginx.tag}, client, progress)
    progress(f"on the {'' if swarm.remote else 'local '}Swarm: "
             f"{', '.join(f'{n.name} {n.swarm_name} {n.address}' for n in swarm.nodes)}")
    return SwarmStack(nodes.node_client(swarm.manager), spec, swarm,
                      {"nginx": table.nginx_node, "redis": table.broker_node}, spread=table.nodes,
                      progress=progress, on_removed=on_removed)
