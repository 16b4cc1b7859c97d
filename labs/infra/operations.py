"""What faults do to a running stack: kill, stop, pause and restart containers, cut a replica off Redis,
and change its topology (a replica added or taken out of the balancer's upstream, the balancer reloaded). A Swarm's
operations (labs.infra.swarm.operations) add its nodes; on one engine a node fault is refused, on a Swarm
a topology change.

Each call is one Docker operation on a container the stack started; faults (`labs.infra.faults`) decide
when. Blocking: the fault schedule runs them in threads beside the clients. One that changes a network's
members holds the stack's `membership` lock (`labs.infra.stack.Lifecycle.membership`).
"""

from __future__ import annotations

import time

import docker.errors

from ..errors import StackError
from ..scenario import Fault
from . import balancers
from .balancers import BalancerAdapter
from .inspect import redis_cli
from .running import Handles, Scalable

#: how long a replica has to exit after SIGTERM before Docker SIGKILLs it (the lab's replicas close their
#: clients and exit in well under a second)
STOP_GRACE_S = 10


class Operations:
    """One engine's: every call acts on a container or a network of `stack` (`running.StackOperations`).
    A topology change needs `topology` too (the stack itself; a live stack found by its label has none)."""

    def __init__(self, stack: Handles, topology: Scalable | None = None,
                 lb: BalancerAdapter = balancers.NGINX) -> None:
        self.stack = stack
        self.topology = topology
        self.lb = lb

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

    # -- topology changes ------------------------------------------------------------------------------

    def _scalable(self, what: str) -> Scalable:
        if self.topology is None:
            raise StackError(f"{what} needs the stack that runs the scenario (a topology change is scheduled in "
                             f"a scenario's [[faults]], on one engine)")
        return self.topology

    def replicas(self) -> list[str]:
        return self._scalable("the replicas in the upstream").replica_names()

    def wait_replica(self, name: str) -> None:
        self._scalable("waiting for a replica").wait_replica(name)

    def reload_lb(self, config: str | None = None, *, retire_within: float | None = None) -> None:
        """Write `config` into the load balancer (None: keep its file) and reload it (`balancers.reload`);
        the signal is sent under `membership`."""
        balancers.reload(self.stack.containers[self.lb.name], self.lb, config=config,
                         retire_within=retire_within, signalling=self.stack.membership)

    def serve(self, replicas: tuple[str, ...], *, retire_within: float | None = None) -> None:
        """Reload the load balancer with `replicas` as its servers (nginx's upstream, HAProxy's backend)."""
        stack = self._scalable("a new upstream")
        config = stack.lb_config(replicas)
        self.reload_lb(config, retire_within=retire_within)
        stack.set_serving(replicas, config)

    def scale_out(self, names: list[str], *, retire_within: float | None = None) -> None:
        """Start each new replica and wait until it is ready, then add them all to the upstream."""
        stack = self._scalable("scale-out")
        for name in names:
            stack.add_replica(name)
        self.serve((*stack.replica_names(), *names), retire_within=retire_within)

    def scale_in(self, name: str, *, retire_within: float | None = None) -> None:
        """Drain, then stop: out of the upstream and the load balancer reloaded (no new client reaches it),
        then SIGTERM (it closes its clients with 1001, going away) and wait until it has exited."""
        stack = self._scalable("scale-in")
        self.serve(tuple(r for r in stack.replica_names() if r != name), retire_within=retire_within)
        self.stop(name, timeout=STOP_GRACE_S)

    def replace(self, batch: list[str], fault: Fault, *, serving: tuple[str, ...], first: bool
                ) -> list[tuple[str, float, float]]:
        """One step of a rolling restart (`faults.RollingRestart`): after `step_pause` (not before the first),
        stop each replica of `batch` (SIGTERM and wait for the exit, or SIGKILL), start them again and wait
        until they are ready. With `drain`, the step begins with nginx reloaded without them (of `serving`) and
        ends with it reloaded with them again; without, nginx learns they are gone by failing to reach them
        (and then holds them down for its fail_timeout). The stops go one after the other (`membership`).
        Each replica's (name, from, until)."""
        if not first:
            time.sleep(fault.step_pause)
        began: dict[str, float] = {}
        if fault.drain:
            began = dict.fromkeys(batch, time.monotonic())
            self.serve(tuple(r for r in serving if r not in batch))
        for name in batch:
            began.setdefault(name, time.monotonic())
            if fault.graceful:
                self.stop(name, timeout=STOP_GRACE_S)
            else:
                self.kill(name)
        for name in batch:
            self.start_again(name)
        ready = {}
        for name in batch:
            self.wait_replica(name)
            ready[name] = time.monotonic()
        if fault.drain:
            self.serve(serving)
            ready = dict.fromkeys(batch, time.monotonic())
        return [(name, began[name], ready[name]) for name in batch]

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
