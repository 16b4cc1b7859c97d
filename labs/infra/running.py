"""What the runner, faults, inspect, the live view and the benches use of a running stack, whichever engine
runs it: `RunningStack`, which `Stack` (one Docker engine) and `SwarmStack` (a Swarm) both satisfy, and
`StackOperations`, what a fault does to it. `launch.open_stack` picks the engine.

Typing only: nothing here talks to Docker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import docker
from docker.models.containers import Container

from ..scenario import Fault
from .balancers import BalancerAdapter


@dataclass
class Timings:
    up_s: float = 0.0
    down_s: float = 0.0


class Handles(Protocol):
    """What operations act on: containers and networks by role, and the lock held while a network's members
    change (`stack.Lifecycle.membership`). A live stack found by its label (`live.remote.Attached`) has
    them too."""

    @property
    def containers(self) -> dict[str, Container]: ...

    @property
    def networks(self) -> dict[str, Any]: ...

    @property
    def membership(self) -> threading.Lock: ...


class Scalable(Protocol):
    """What a topology change needs of a stack besides its containers (`Stack`, one engine): the replicas in
    the load balancer's upstream, a replica made as the others were, and the balancer's config for a set
    of replicas."""

    def replica_names(self) -> list[str]: ...
    def add_replica(self, name: str) -> None: ...
    def wait_replica(self, name: str) -> None: ...
    def lb_config(self, replicas: tuple[str, ...]) -> str: ...
    def set_serving(self, replicas: tuple[str, ...], config: str) -> None: ...


class StackOperations(Protocol):
    """What faults do to a running stack (`operations.Operations` on one engine, `SwarmOperations` on a
    Swarm, which adds the node faults the one engine refuses)."""

    def has(self, name: str) -> bool: ...
    def kill(self, name: str) -> None: ...
    def start_again(self, name: str) -> None: ...
    def stop(self, name: str, timeout: int = 5) -> None: ...
    def pause(self, name: str, attempts: int = 3) -> None: ...
    def unpause(self, name: str) -> None: ...
    def cut_from_redis(self, name: str) -> None: ...
    def reconnect_to_redis(self, name: str) -> None: ...
    def redis_cli(self, *args: str) -> str: ...
    def cluster_cli(self, node: str, *args: str) -> str: ...
    def kill_node(self, name: str) -> None: ...
    def restart_node(self, name: str) -> None: ...
    def cut_node(self, name: str) -> None: ...
    def link_node(self, name: str) -> None: ...
    def drain_node(self, name: str) -> None: ...
    def activate_node(self, name: str) -> None: ...
    def replicas(self) -> list[str]: ...
    def wait_replica(self, name: str) -> None: ...
    def reload_lb(self, config: str | None = None, *, retire_within: float | None = None) -> None: ...
    def serve(self, replicas: tuple[str, ...], *, retire_within: float | None = None) -> None: ...
    def scale_out(self, names: list[str], *, retire_within: float | None = None) -> None: ...
    def scale_in(self, name: str, *, retire_within: float | None = None) -> None: ...
    def replace(self, batch: list[str], fault: Fault, *, serving: tuple[str, ...], first: bool
                ) -> list[tuple[str, float, float]]: ...


class RunningStack(Handles, Protocol):
    """A topology that is up: its load balancer (nginx or HAProxy, `balancer`) at `host:port` (more of its
    ports in `ports`), the replicas app-1..N, the broker's containers. A context manager: entering starts it
    (and removes what a failed start made), leaving removes it on every exit path."""

    @property
    def client(self) -> docker.DockerClient:
        """The engine the stack was created through (a Swarm's manager)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def ports(self) -> dict[int, int]: ...

    @property
    def balancer(self) -> BalancerAdapter:
        """What balances: its container is `containers[balancer.name]`."""

    @property
    def balancer_conf(self) -> str:
        """The balancer's config the run used."""

    @property
    def logs(self) -> dict[str, str]:
        """Every container's log, collected by the teardown."""

    @property
    def timings(self) -> Timings: ...

    @property
    def events(self) -> list[tuple[float, str]]:
        """(host monotonic time, what the engine said changed) while the run went: a Swarm's nodes and tasks;
        one engine says nothing."""

    @property
    def removed(self) -> list[str]: ...

    @property
    def stopping(self) -> bool:
        """The teardown has begun: anything still waiting on the stack should give up."""

    def replica_names(self) -> list[str]:
        """The replicas in the balancer's upstream now (a scale-out adds to them, a scale-in removes)."""

    def node_of(self) -> dict[str, str]:
        """Which node ran each container ("local" on one engine)."""

    def operations(self) -> StackOperations: ...

    def __enter__(self) -> RunningStack: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
