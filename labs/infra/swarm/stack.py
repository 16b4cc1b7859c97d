"""The same topology as `Stack`, run as Docker Swarm services placed across a Swarm's nodes.

One service per container of the single-engine stack (redis, app-N, nginx), each with one task pinned to
its node by a `node.hostname` constraint (`placement`), on two overlay networks (front, back). This kernel
has no IPVS, so every service uses `--endpoint-mode dnsrr`: its name (an alias on the network) resolves to
its task's address, on any node. nginx's port is published in host mode on its node (no routing mesh) and
reached from the host at that node's address. The runner, workload, faults and inspect see what they see
of `Stack`: containers by name (handles on the node that runs each), networks, `host` and `port`.

Everything carries the run's labels (services, their containers, networks, the nginx config) and is removed
on every exit path, from the manager.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from ... import signals
from ...errors import StackError
from ...settings import LABEL
from ..balancers import LISTEN_PORT, NGINX, READY_PATH, BalancerAdapter, workers
from ..readiness import TRANSIENT, http_get, wait_ready
from ..running import Timings
from ..stack import APP_PORT, LOG_TAIL, Backend, Lifecycle, StackSpec, labels, remove_when_free
from . import nodes as local
from .events import watch
from .nodes import Swarm, node_client
from .operations import SwarmOperations
from .rolling import stop_settings

#: a task that will not run: Swarm says why in its status
TASK_FAILED = {"failed", "rejected", "orphaned", "remove"}
#: What the single-engine stack gives every container (`stack.UNPRIVILEGED`), as far as a service takes it:
#: user nobody and no capabilities, but no `no-new-privileges` of its own. A service's ContainerSpec has no
#: such field in API 1.41 (Docker 20.10): its `Privileges` holds CredentialSpec and SELinuxContext only
#: (docker-py 7.2's `ContainerSpec` likewise: `privileges`, `cap_add`/`cap_drop`, no such option), and a
#: 20.10 engine drops fields it does not know. `Privileges.NoNewPrivileges` came with API 1.46 (Docker 27).
#: So the lab's node engines run with `--no-new-privileges`
#: (`nodes.dockerd_command`), which applies it to every container they start; a real Swarm joined with
#: `swarm use` has its tasks gain no privileges only if its engines were started that way.
UNPRIVILEGED_SERVICE: dict[str, Any] = {"user": "65534:65534", "cap_drop": ["ALL"]}


def place(names: list[str], nodes: list[str], *, pinned: dict[str, str]) -> dict[str, str]:
    """Which node runs what: `pinned` names where given, the replicas (app-N) round the nodes in turn."""
    out: dict[str, str] = {}
    replicas = [n for n in names if n not in pinned]
    for i, name in enumerate(replicas):
        out[name] = nodes[i % len(nodes)]
    out.update({n: pinned[n] for n in names if n in pinned})
    return out


@dataclass
class SwarmStack(Lifecycle):
    """A running topology on a Swarm; use as `with SwarmStack(manager, spec, swarm, pinned) as stack:`."""

    WHOLE, PARTS = "services", "service(s), config(s) and network(s)"

    client: docker.DockerClient
    spec: StackSpec
    swarm: Swarm
    #: nginx and the broker's containers -> node names (the replicas are spread over every node)
    pinned: dict[str, str]
    #: how many of the Swarm's nodes the replicas spread over (node-1..node-<spread>; 0: all)
    spread: int = 0
    progress: Callable[[str], None] = lambda line: None
    on_removed: Callable[[list[str]], None] = lambda names: None
    containers: dict[str, Container] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    host: str = ""
    port: int = 0
    ports: dict[int, int] = field(default_factory=dict)
    balancer_conf: str = ""
    removed: list[str] = field(default_factory=list)
    #: (host monotonic time, what Swarm said changed): nodes going down and up, tasks stopped and started
    events: list[tuple[float, str]] = field(default_factory=list)
    #: the nginx config's Swarm config object
    configs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cleanup = ExitStack()
        self._stopping = threading.Event()
        self.membership = threading.Lock()
        self.nodes = {n.name: node_client(n) for n in self.swarm.nodes}

    def _release(self) -> None:
        for c in self.nodes.values():
            c.close()

    # -- start -----------------------------------------------------------------------------------------

    @property
    def balancer(self) -> BalancerAdapter:
        """nginx: the one balancer a Swarm runs (as a service with its config as a Swarm config)."""
        return NGINX

    def start(self) -> None:
        spec = self.spec
        if spec.balancer is not NGINX:
            raise StackError(f"a Swarm runs nginx only, not {spec.balancer.name}: run this scenario on one engine")
        t0 = time.monotonic()
        self._cleanup.callback(self._remove_all)
        names = [b.name for b in spec.broker_backends] + self.replica_names() + ["nginx"]
        self.placement = place(names, [n.name for n in self.swarm.nodes][:self.spread or None], pinned=self.pinned)
        with signals.deferred():
            for role in ("front", "back") if spec.needs_back else ("front",):
                self.networks[role] = self.client.networks.create(
                    f"wslab-{spec.run_id}-{role}", driver="overlay", internal=role == "back",
                    attachable=False, labels=labels(spec.run_id, f"network-{role}"))
            for b in spec.broker_backends:
                self._service(b.name, b.image, list(b.command), ["back"])
            for name in self.replica_names():
                self._service(name, spec.app_image or spec.images.app.tag, self._app_command(name),
                              ["front", "back"] if spec.needs_back else ["front"], **stop_settings(spec.graceful_stop))
        self.progress(f"created {len(self.services)} service(s) over {len(set(self.placement.values()))} node(s)")
        for name in list(self.services):
            self._wait_task(name)
        for b in spec.broker_backends:
            self._wait_log(b)
        self.balancer_conf = spec.balancer_conf
        if spec.balancer_conf_for is not None:
            self.balancer_conf = spec.balancer_conf_for(self._client_net())
        with signals.deferred():
            config = self.client.configs.create(name=f"wslab-{spec.run_id}-nginx", data=self.balancer_conf.encode(),
                                                labels=labels(spec.run_id, "nginx-config"))
            self.configs.append(config)
            self.port = spec.host_port or LISTEN_PORT
            self._service("nginx", spec.images.nginx.tag, NGINX.command(), ["front"],
                          configs=[docker.types.ConfigReference(config.id, config.name, filename=NGINX.config_path,
                                                                uid="65534", gid="65534", mode=0o444)],
                          endpoint_spec=docker.types.EndpointSpec(
                              mode="dnsrr", ports={self.port: (LISTEN_PORT, "tcp", "host")}))
        self._wait_task("nginx")
        self.host = self.swarm.node(self.placement["nginx"]).address
        self.ports = {LISTEN_PORT: self.port}
        self._poll("nginx", lambda: http_get(self.port, READY_PATH, host=self.host)[0] == 200)
        for name in self.replica_names():
            self._poll(name, partial(self._healthy, name))
        self.timings.up_s = time.monotonic() - t0
        where = ", ".join(f"{n}@{node}" for n, node in self.placement.items())
        self.progress(f"all ready in {self.timings.up_s:.2f}s; nginx on {self.host}:{self.port}; {where}")
        watcher = threading.Thread(target=watch, args=(self.swarm, lambda: self.services, self.events,
                                                       self._stopping), name="swarm-watch", daemon=True)
        watcher.start()
        self._cleanup.callback(watcher.join, 5)
        self._cleanup.callback(self._stopping.set)

    def _client_net(self) -> str:
        """Where the host's connections reach nginx from: a port published in host mode goes through the
        node's docker_gwbridge (made with the node's first task on an overlay network); else the front."""
        try:
            bridge = self.nodes[self.placement["nginx"]].networks.get("docker_gwbridge")
            return str(bridge.attrs["IPAM"]["Config"][0]["Subnet"])
        except (docker.errors.NotFound, LookupError, TypeError):
            return self._subnet("front")

    def _subnet(self, role: str) -> str:
        """The overlay network's subnet (the manager allocates it, not always by the time create returns)."""
        network = self.networks[role]
        found: list[str] = []

        def probe() -> bool:
            network.reload()
            config = network.attrs.get("IPAM", {}).get("Config") or []
            found.extend(c["Subnet"] for c in config if c.get("Subnet"))
            return bool(found)

        self._poll(f"network {role}", probe)
        return found[0]

    def _app_command(self, name: str) -> list[str]:
        spec = self.spec
        return [*(spec.app_command or ("/opt/venv/bin/python", "-m", spec.app_module)),
                "--name", name, "--port", str(APP_PORT), "--broker", spec.broker, "--redis", spec.broker_url,
                *spec.app_args]

    def _service(self, name: str, image: str, command: list[str], roles: list[str], **kwargs: Any) -> None:
        run_id = self.spec.run_id
        if name in self.spec.small_buffers:
            kwargs["sysctls"] = {"net.ipv4.tcp_rmem": "4096 16384 16384", "net.ipv4.tcp_wmem": "4096 16384 16384"}
        kwargs.setdefault("endpoint_spec", docker.types.EndpointSpec(mode="dnsrr"))
        self.services[name] = self.client.services.create(
            image, command, name=f"wslab-{run_id}-{name}", hostname=name,
            labels=labels(run_id, name), container_labels=labels(run_id, name),
            networks=[docker.types.NetworkAttachmentConfig(self.networks[r].id, aliases=[name]) for r in roles],
            constraints=[f"node.hostname=={self.swarm.node(self.placement[name]).swarm_name}"],
            restart_policy=docker.types.RestartPolicy(condition="any", delay=500_000_000),
            **UNPRIVILEGED_SERVICE, **kwargs)

    def _poll(self, what: str, probe: Callable[[], bool], timeout: float | None = None,
              logs: Callable[[], str] | None = None) -> None:
        """`readiness.wait_ready` on this stack; at the deadline the message gives the container's log (the
        task's state while it has none)."""
        wait_ready(what, probe, timeout=timeout or self.spec.ready_timeout,
                   where=f"{self.host}:{self.port}" + (f" on {self.placement[what]}" if what in self.placement else ""),
                   stopping=self._stopping,
                   logs=logs or (lambda: self._tail(what)))

    def _tail(self, name: str) -> str:
        """The last lines of the container's log, else what Swarm says of the service's tasks."""
        container = self.containers.get(name)
        if container is not None:
            try:
                return container.logs(tail=LOG_TAIL).decode(errors="replace").strip()
            except (docker.errors.APIError, *TRANSIENT):
                pass
        service = self.services.get(name)
        if service is None:
            return ""
        try:
            tasks = service.tasks()
        except (docker.errors.APIError, *TRANSIENT):
            return ""
        return "\n".join(f"task {t['ID'][:12]}: {t['Status']['State']} (desired {t['DesiredState']}) "
                         f"{t['Status'].get('Err', '')}".rstrip() for t in tasks)

    def _healthy(self, name: str) -> bool:
        return http_get(self.port, f"/_lab/{name}/healthz", host=self.host)[0] == 200

    def running_task(self, name: str, other_than: str | None = None) -> dict[str, Any] | None:
        """The service's task that runs now, other than the task `other_than` (None while none does); raises
        when Swarm gave up on it."""
        tasks: list[dict[str, Any]] = [t for t in self.services[name].tasks(filters={"desired-state": "running"})
                                       if t["ID"] != other_than]
        for t in tasks:
            if t["Status"]["State"] == "running" and t["Status"].get("ContainerStatus", {}).get("ContainerID"):
                return t
        failed = [t for t in tasks if t["Status"]["State"] in TASK_FAILED]
        if failed and len(failed) == len(tasks):
            raise StackError(f"{name}: Swarm task {failed[-1]['Status']['State']}: "
                             f"{failed[-1]['Status'].get('Err', '')}")
        return None

    def _wait_task(self, name: str, timeout: float | None = None, other_than: str | None = None) -> None:
        """Until the service's task (other than `other_than`) runs; then its container, on its node, is
        `containers[name]`."""
        found: list[dict[str, Any]] = []

        def probe() -> bool:
            task = self.running_task(name, other_than)
            if task is not None:
                found.append(task)
            return task is not None

        self._poll(name, probe, timeout)
        node = self.placement[name]
        self.containers[name] = self.nodes[node].containers.get(found[-1]["Status"]["ContainerStatus"]["ContainerID"])

    def _wait_log(self, backend: Backend) -> None:
        container = self.containers[backend.name]
        self._poll(backend.name, lambda: backend.ready_log in container.logs())

    def replica_names(self) -> list[str]:
        return [f"app-{i}" for i in range(1, self.spec.replicas + 1)]

    def node_of(self) -> dict[str, str]:
        """Which node ran each container."""
        return dict(self.placement)

    # -- what node faults need -----------------------------------------------------------------------------

    def on_node(self, node: str) -> list[str]:
        return [name for name, where in self.placement.items() if where == node]

    def kill_node(self, node: str) -> None:
        local.kill_node(self.swarm, node)

    def restart_node(self, node: str) -> None:
        self.swarm = local.restart_node(self.swarm, node)
        self.rejoin(node)

    def cut_node(self, node: str) -> None:
        local.set_link(self.swarm, node, up=False)

    def link_node(self, node: str) -> None:
        local.set_link(self.swarm, node, up=True)
        self.rejoin(node)

    def set_availability(self, node: str, availability: str) -> None:
        swarm_node = self.client.nodes.get(self.swarm.node(node).swarm_name)
        spec = dict(swarm_node.attrs["Spec"], Availability=availability)
        swarm_node.update(spec)
        if availability == "active":
            self.rejoin(node)

    def rejoin(self, node: str, timeout: float = 60.0) -> None:
        """After a node came back: as `refresh`, for every task of that node."""
        self.refresh(self.on_node(node), timeout)

    def refresh(self, names: list[str], timeout: float = 60.0, *, replaced: dict[str, str] | None = None) -> None:
        """Wait until Swarm runs these services' tasks again (a service in `replaced`: a task other than the
        one named there, which its update replaces), take the new containers, and have nginx reach them: wait
        until nginx's node resolves each name to its task's address (in `replaced`: to that alone, the old
        task's gone), reload nginx, and wait until each replica answers through it."""
        replaced = replaced or {}
        t0 = time.monotonic()
        for name in names:
            self._wait_task(name, timeout, other_than=replaced.get(name))
        running = time.monotonic() - t0
        apps = [name for name in names if name != "nginx"]
        for name in apps:
            self._poll(name, partial(self._resolves, name, only=name in replaced), timeout,
                       logs=partial(self._resolved, name))
        resolved = time.monotonic() - t0
        self.reload_nginx()
        for name in apps:
            self._poll(name, partial(self._healthy, name), timeout)
        self.progress(f"{', '.join(names)}: new task running {running:.2f}s, resolved by nginx's node "
                      f"{resolved:.2f}s, reached through nginx {time.monotonic() - t0:.2f}s")

    def operations(self) -> SwarmOperations:
        return SwarmOperations(self)

    def _addresses(self, name: str) -> tuple[set[str], set[str]]:
        """What nginx's node resolves `name` to, and the addresses of the task that runs it now."""
        code, out = self.containers["nginx"].exec_run(["getent", "hosts", name])
        networks = self.containers[name].attrs["NetworkSettings"]["Networks"]
        task = {n["IPAddress"] for n in networks.values() if n.get("IPAddress")}
        return (set(out.decode().split()) - {name} if code == 0 else set()), task

    def _resolves(self, name: str, only: bool = False) -> bool:
        """nginx's node resolves `name` to the task's current address (`only`: to no other)."""
        resolved, task = self._addresses(name)
        return bool(resolved & task) and (not only or resolved <= task)

    def _resolved(self, name: str) -> str:
        """Why `_resolves` is false: both sides, and the task's log."""
        try:
            resolved, task = self._addresses(name)
        except (docker.errors.APIError, *TRANSIENT) as exc:
            return f"(nginx's node not asked: {exc})"
        return (f"nginx's node ({self.placement['nginx']}) resolves {name} to {sorted(resolved) or 'nothing'}; "
                f"its task on {self.placement[name]} has {sorted(task)}\n{self._tail(name)}")

    def reload_nginx(self) -> None:
        """`nginx -s reload`, then wait until a new generation of workers runs (they resolved the names anew)."""
        container = self.containers["nginx"]
        before = workers(container)
        code, out = container.exec_run(["nginx", "-c", NGINX.config_path, "-s", "reload"])
        if code != 0:
            raise StackError(f"nginx reload failed ({code}): {out.decode(errors='replace').strip()}")
        self._poll("nginx", lambda: bool(workers(container) - before))

    def poll(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        """Poll `probe` on this stack until true (`readiness.wait_ready`; the container's log at the deadline)."""
        self._poll(what, probe, timeout)

    # -- teardown --------------------------------------------------------------------------------------

    def _collect_logs(self) -> None:
        for name, container in self.containers.items():
            try:
                self.logs[name] = container.logs(timestamps=True).decode(errors="replace")
            except (docker.errors.APIError, *TRANSIENT) as exc:
                self.logs[name] = f"(logs unavailable: {exc})"

    def _remove_all(self) -> None:
        """Remove the run's services (Swarm stops their tasks), then, once no task holds them, its networks
        and config. What the run's label finds goes too."""
        label = {"label": f"{LABEL}={self.spec.run_id}"}
        services = {s.id: s for s in self.services.values()}
        services.update({s.id: s for s in self.client.services.list(filters=label)})
        for s in services.values():
            try:
                s.remove()
            except docker.errors.NotFound:
                pass
        self._wait_tasks_gone()
        configs = {c.id: c for c in self.configs}
        configs.update({c.id: c for c in self.client.configs.list(filters=label)})
        networks = {n.id: n for n in self.networks.values()}
        networks.update({n.id: n for n in self.client.networks.list(filters=label)})
        for thing in [*configs.values(), *networks.values()]:
            remove_when_free(thing)
        self.removed = ([s.name for s in services.values()] + [c.name for c in configs.values()]
                        + [n.name for n in networks.values()])
        self.on_removed(self.removed)

    def _wait_tasks_gone(self, timeout: float = 30.0) -> None:
        """Until no node runs a container of this run (a network in use cannot be removed)."""
        label = {"label": f"{LABEL}={self.spec.run_id}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = []
            for client in self.nodes.values():
                try:
                    left += client.containers.list(all=True, filters=label, sparse=True)
                except (docker.errors.APIError, *TRANSIENT):
                    continue  # a node that is down holds nothing the manager waits for
            if not left:
                return
            time.sleep(0.1)

