"""What faults do to a stack on a Swarm: the one engine's operations where Swarm lets them be (pause,
redis-cli), a replica killed and started again through its service, a rolling restart as service updates
(`rolling`), and a node killed, cut off or drained.
"""

from __future__ import annotations

from typing import Protocol

from ...scenario import Fault
from ..operations import Operations
from ..running import Handles
from . import rolling


class OnSwarm(Handles, rolling.Updating, Protocol):
    """What the operations use of a `SwarmStack` (which builds them, so they do not import it)."""

    def replica_names(self) -> list[str]: ...
    def kill_node(self, node: str) -> None: ...
    def restart_node(self, node: str) -> None: ...
    def cut_node(self, node: str) -> None: ...
    def link_node(self, node: str) -> None: ...
    def set_availability(self, node: str, availability: str) -> None: ...


class SwarmOperations(Operations):
    def __init__(self, stack: OnSwarm) -> None:
        super().__init__(stack)
        self.swarm = stack

    def kill(self, name: str) -> None:
        """SIGKILL the task's container, and hold the service at 0 tasks: Swarm would otherwise start a new
        one at once, where the one engine waits for the heal."""
        self.swarm.containers[name].kill()
        self._scale(name, 0)

    def start_again(self, name: str) -> None:
        self._scale(name, 1)
        self.swarm.refresh([name])

    def replicas(self) -> list[str]:
        return self.swarm.replica_names()

    def replace(self, batch: list[str], fault: Fault, *, serving: tuple[str, ...], first: bool
                ) -> list[tuple[str, float, float]]:
        """One step of a rolling restart: the replicas' services updated (`rolling.replace`); the pause
        between steps is the update's own delay."""
        return rolling.replace(self.swarm, batch, fault)

    def _scale(self, name: str, replicas: int) -> None:
        service = self.swarm.services[name]
        service.reload()  # an update names the version it changes: the one Swarm holds now
        service.scale(replicas)

    def kill_node(self, name: str) -> None:
        self.swarm.kill_node(name)

    def restart_node(self, name: str) -> None:
        self.swarm.restart_node(name)

    def cut_node(self, name: str) -> None:
        self.swarm.cut_node(name)

    def link_node(self, name: str) -> None:
        self.swarm.link_node(name)

    def drain_node(self, name: str) -> None:
        self.swarm.set_availability(name, "drain")

    def activate_node(self, name: str) -> None:
        self.swarm.set_availability(name, "active")
