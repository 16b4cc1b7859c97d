"""What faults do to a running stack: kill, stop, pause and restart containers, cut a replica off Redis.
A Swarm's operations (labs.infra.swarm_operations) add its nodes.

Each call is one Docker operation on a container the stack started; faults (`labs.infra.faults`) decide
when. Blocking: the fault schedule runs them in threads beside the clients.
"""

from __future__ import annotations

from .inspect import redis_cli
from .stack import Stack


class Operations:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def kill(self, name: str) -> None:
        self.stack.containers[name].kill()

    def start_again(self, name: str) -> None:
        self.stack.containers[name].start()

    def stop(self, name: str, timeout: int = 5) -> None:
        self.stack.containers[name].stop(timeout=timeout)

    def pause(self, name: str) -> None:
        self.stack.containers[name].pause()

    def unpause(self, name: str) -> None:
        self.stack.containers[name].unpause()

    def cut_from_redis(self, name: str) -> None:
        self.stack.networks["back"].disconnect(self.stack.containers[name], force=True)

    def reconnect_to_redis(self, name: str) -> None:
        self.stack.networks["back"].connect(self.stack.containers[name], aliases=[name])

    def redis_cli(self, *args: str) -> str:
        return redis_cli(self.stack, *args)
