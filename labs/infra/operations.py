"""What faults do to a running stack: kill, stop, pause and restart containers, cut a replica off Redis.
A Swarm's operations (labs.infra.swarm.operations) add its nodes; on one engine a node fault is refused.

Each call is one Docker operation on a container the stack started; faults (`labs.infra.faults`) decide
when. Blocking: the fault schedule runs them in threads beside the clients. One that changes a network's
members holds the stack's `membership` lock (`labs.infra.stack.Lifecycle.membership`).
"""

from __future__ import annotations

import docker.errors

from ..errors import StackError
from .inspect import redis_cli
from .running import Handles


class Operations:
    """One engine's: every call acts on a container or a network of `stack` (`running.StackOperations`)."""

    def __init__(self, stack: Handles) -> None:
        self.stack = stack

    def has(self, name: str) -> bool:
        return name in self.stack.containers

    def kill(self, name: str) -> None:
        """SIGKILL; returns once the container has exited (its endpoints go with it: see `membership`)."""
        container = self.stack.containers[name]
        with self.stack.membership:
            container.kill()
            container.wait(condition="not-running")

    def start_again(self, name: str) -> None:
        with self.stack.membership:
            self.stack.containers[name].start()

    def stop(self, name: str, timeout: int = 5) -> None:
        with self.stack.membership:
            self.stack.containers[name].stop(timeout=timeout)

    def pause(self, name: str, attempts: int = 3) -> None:
        """Freeze the container. runc can fail to freeze a busy many-threaded process in time ("unable to
        freeze", seen with nats-server on a loaded host): that is retried, anything else raised."""
        for attempt in range(1, attempts + 1):
            try:
                self.stack.containers[name].pause()
                return
            except docker.errors.APIError as exc:
                if "unable to freeze" not in str(exc) or attempt == attempts:
                    raise

    def unpause(self, name: str) -> None:
        self.stack.containers[name].unpause()

    def cut_from_redis(self, name: str) -> None:
        with self.stack.membership:
            self.stack.networks["back"].disconnect(self.stack.containers[name], force=True)

    def reconnect_to_redis(self, name: str) -> None:
        with self.stack.membership:
            self.stack.networks["back"].connect(self.stack.containers[name], aliases=[name])

    def redis_cli(self, *args: str) -> str:
        return redis_cli(self.stack, *args)

    def cluster_cli(self, node: str, *args: str) -> str:
        """redis-cli in one Redis Cluster node (redis-1..N)."""
        return redis_cli(self.stack, *args, node=node)

    def kill_node(self, name: str) -> None:
        raise _no_nodes("kill-node", name)

    def restart_node(self, name: str) -> None:
        raise _no_nodes("kill-node", name)

    def cut_node(self, name: str) -> None:
        raise _no_nodes("partition-node", name)

    def link_node(self, name: str) -> None:
        raise _no_nodes("partition-node", name)

    def drain_node(self, name: str) -> None:
        raise _no_nodes("drain-node", name)

    def activate_node(self, name: str) -> None:
        raise _no_nodes("drain-node", name)


def _no_nodes(kind: str, node: str) -> StackError:
    return StackError(f"{kind} {node} needs a Swarm ([swarm] table): this stack runs on one engine")
