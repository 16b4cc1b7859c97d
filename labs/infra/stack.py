"""The lab's containers, their lifecycle: two networks, Redis, N app replicas and the load balancer (nginx
or HAProxy: `balancers`), started in parallel, awaited, and removed (paused, each network emptied one
endpoint at a time, then all at once).

Every resource carries the run's label and comes back on every exit path: `Stack` is a context manager
that tears down in `__exit__`, and in `__enter__` too when start-up fails half-way. Each Docker call that
creates something runs in a critical section (`signals.deferred`): a Ctrl-C waits until the handle is
ours, so nothing exists that the teardown does not know. What faults do to a running stack lives in
`operations`, what the harness reads from it in `inspect`.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from .. import signals
from ..errors import EngineError, StackError
from ..settings import LABEL, OWNER, OWNER_LABEL
from .balancers import LISTEN_PORT, NGINX, READY_PATH, BalancerAdapter, write_config
from .engine import NO_ANSWER, wedged
from .images import ImageSet
from .operations import Operations

# http_get, TRANSIENT and Timings are imported from here too (the stack's own names before readiness.py)
from .readiness import TRANSIENT as TRANSIENT
from .readiness import http_get as http_get
from .readiness import wait_ready
from .running import Timings as Timings

APP_PORT = 8000
LOG_TAIL = 20
#: every process in every container: an unprivileged user (nobody), no capabilities, no way to gain any.
#: Nothing here needs one: the balancer listens on 8080 (HAProxy keeps its pid file and stats socket under
#: /tmp), Redis writes under /tmp, the replicas only talk.
UNPRIVILEGED: dict[str, Any] = {"user": "65534:65534", "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


@dataclass(frozen=True)
class Backend:
    """A broker-side container on the back network, which only the replicas reach: Redis, and any other
    broker or a cluster's nodes the same way. It is ready when `ready_log` appears in its log."""

    name: str
    image: str
    command: tuple[str, ...]
    ready_log: bytes
    #: more networks it joins besides back, by role (a Redis Cluster's nodes: "bus", for their cluster bus)
    networks: tuple[str, ...] = ()


REDIS_READY = b"Ready to accept connections"


def redis_backend(image: str, args: tuple[str, ...] = ("--save", "", "--appendonly", "no"),
                  name: str = "redis") -> Backend:
    return Backend(name, image, ("redis-server", *args, "--dir", "/tmp", "--protected-mode", "no",
                                 "--bind", "0.0.0.0"), REDIS_READY)


NATS_READY = b"Server is ready"
NATS_URL = "nats://nats:4222"


def nats_backend(image: str, *, jetstream: bool = False, max_pending: int | None = None,
                 write_deadline: float | None = None, name: str = "nats") -> Backend:
    """nats-server (Debian's, in the base image), as user nobody: JetStream stores its files under /tmp/js.

    A connection the server cannot write to is closed as a slow consumer when more than `max_pending` bytes
    wait for it (64 MB by default) or one write blocks for `write_deadline` seconds (10 s by default). Both
    can only be set in a config file: the container writes one to /tmp first (with `max_payload`, which may
    not exceed `max_pending`)."""
    lines = []
    if max_pending is not None:
        lines += [f"max_pending: {max_pending}", f"max_payload: {min(max_pending, 1 << 20) // 2}"]
    if write_deadline is not None:
        lines.append(f'write_deadline: "{write_deadline:g}s"')
    config = "".join(f"{line}\\n" for line in lines)
    args = "-a 0.0.0.0 -p 4222" + (" -js --store_dir /tmp/js" if jetstream else "")
    script = f"printf '{config}' > /tmp/nats.conf && exec nats-server -c /tmp/nats.conf {args}"
    return Backend(name, image, ("sh", "-c", script), NATS_READY)


class Renderer(Protocol):
    """The nginx config for the client network (trusted for X-Forwarded-For) and the replicas in the
    upstream (app-1..N unless a topology change says otherwise)."""

    def __call__(self, client_net: str, replicas: tuple[str, ...] = ...) -> str: ...


@dataclass(frozen=True)
class StackSpec:
    run_id: str
    replicas: int
    broker: str
    #: the balancer's rendered config (nginx.conf or haproxy.cfg)
    balancer_conf: str
    images: ImageSet
    host_port: int | None = None
    ready_timeout: float = 30.0
    #: python module the replicas run (`python -m <module>`), and extra arguments for it
    app_module: str = "wslab_app"
    app_args: tuple[str, ...] = ()
    #: the replicas' program when it is not `python -m app_module` in the app image (the seed article's Node
    #: servers: `node <file>` in the node image); the stack adds the same arguments to it
    app_command: tuple[str, ...] = ()
    app_image: str = ""
    #: Redis persistence: with streams, an append-only file fsynced on every write survives a restart
    redis_args: tuple[str, ...] = ("--save", "", "--appendonly", "no")
    #: containers whose socket buffers are kept small (16 KiB), so that a backlog to a frozen replica
    #: cannot hide in the kernels (up to 32 MiB here) and Redis's own output buffer for it fills instead
    small_buffers: tuple[str, ...] = ()
    #: when set, renders the balancer's config from the front network's subnet once that network exists (the
    #: host's connections arrive from it, so realip may trust that network and no other); else `balancer_conf`
    balancer_conf_for: Renderer | None = None
    #: more nginx container ports to publish, each on its own ephemeral 127.0.0.1 port (the host reaches a
    #: published port through one docker-proxy process per port, and each holds two files per connection)
    extra_nginx_ports: tuple[int, ...] = ()
    #: the open-file limit (soft = hard) of every container; None leaves the engine's default
    nofile: int | None = None
    #: net.core.somaxconn in the balancer's and the replicas' network namespaces (it caps their backlogs);
    #: None leaves the kernel's default (4096 since Linux 5.4, 128 before)
    backlog: int | None = None
    #: the broker's containers; None: one Redis (with `redis_args`) when the broker is not "none"
    backends: tuple[Backend, ...] | None = None
    #: what the replicas are given as their broker's address (`--redis`, whatever the broker)
    broker_url: str = "redis://redis:6379/0"
    #: run once every backend is ready, before the stack counts as up (a Redis Cluster is formed here); a
    #: failure tears the stack down like any other start-up failure
    form: Callable[[Stack], None] | None = None
    #: what balances: nginx or HAProxy
    balancer: BalancerAdapter = NGINX
    #: on a Swarm, how a replica's task is stopped (a service update, the teardown): SIGTERM with time to
    #: exit (True), or SIGKILL (a rolling restart with graceful = false)
    graceful_stop: bool = True

    def __post_init__(self) -> None:
        ports = self.extra_nginx_ports
        if len(set(ports)) != len(ports) or not all(1024 <= p <= 65535 and p != LISTEN_PORT for p in ports):
            raise StackError(f"bad extra nginx ports {ports!r}: distinct ports in 1024..65535 other than {LISTEN_PORT}")
        if ports and self.balancer is not NGINX:
            raise StackError(f"extra listen ports are nginx's (the connections bench); this stack runs {self.balancer.name}")
        if self.nofile is not None and not 1024 <= self.nofile <= 1_048_576:
            raise StackError(f"nofile {self.nofile} must be 1024..1048576 (and at most the host's hard limit)")
        if self.backlog is not None and not 128 <= self.backlog <= 65535:
            raise StackError(f"backlog {self.backlog} must be 128..65535")

    @property
    def broker_backends(self) -> tuple[Backend, ...]:
        if self.backends is not None:
            return self.backends
        return () if self.broker == "none" else (redis_backend(self.images.redis.tag, self.redis_args),)

    @property
    def needs_back(self) -> bool:
        """The replicas need the back network: the broker has containers."""
        return bool(self.broker_backends)


def labels(run_id: str, role: str) -> dict[str, str]:
    return {LABEL: run_id, OWNER_LABEL: OWNER, "wslab.role": role}


def check_port_free(port: int) -> None:
    """Fail early, with one clear line, when the requested host port is taken."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(f"port 127.0.0.1:{port} is taken; pass another --port or leave it out") from None


def _balancer_failed(balancer: BalancerAdapter, container: Container, otherwise: str) -> StackError:
    """The balancer's own words, in one line, when its check (`nginx -t`, `haproxy -c`) rejected the config
    (it may exit before its port is read)."""
    return StackError(balancer.rejected(_tail(container)) or otherwise)


def _tail(container: Container, lines: int = LOG_TAIL) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").strip()
    except docker.errors.APIError:
        return "(no logs)"


class Lifecycle:
    """What every stack (this one, and the Swarm's) shares: `with` starts it, tearing down whatever a failed
    start made, and leaving tears it down on every exit path. Signals are recorded, not raised, until the
    teardown is over: a second Ctrl-C cannot cut it short. A stack supplies start, _collect_logs, _release,
    and sets _cleanup, _stopping and membership when it is made."""

    #: what the teardown's lines name
    WHOLE, PARTS = "stack", "container(s) and network(s)"
    #: Held while a container leaves a network, or may (disconnected, killed, stopped, removed), and by a
    #: fault's start or connect. Docker 20.10 (libnetwork) keeps each network's endpoint count apart from
    #: its endpoints, with a compare-and-swap and a retry: when containers leave one network at the same
    #: moment it can miss a decrement, and a network counted above its endpoints refuses removal ("has
    #: active endpoints") until dockerd restarts (its log then says "Fixing inconsistent endpoint_cnt").
    #: Measured on a 2-core VM with both cores busy, 8 containers on two networks started and removed over
    #: and over: all removed at once left a network stuck in 2 of 80 rounds (3 of 80 with the starts one at
    #: a time); removed one at a time, 0 of 80; each network emptied one endpoint at a time (the networks in
    #: parallel), then all removed at once, 0 of 120. The teardown does the last.
    membership: threading.Lock
    progress: Callable[[str], None]
    timings: Timings
    removed: list[str]
    #: the teardown's steps, last in first out
    _cleanup: ExitStack
    #: set when the teardown begins: readiness probes still polling give up at once
    _stopping: threading.Event

    def start(self) -> None:
        raise NotImplementedError

    def _collect_logs(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        """The teardown has begun: anything still waiting on the stack should give up."""
        return self._stopping.is_set()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with signals.deferred():
            t0 = time.monotonic()
            self.progress(f"removing the {self.WHOLE}")
            self._stopping.set()
            try:
                if signals.pending() is None:  # interrupted: leave at once, logs are not worth the wait
                    self._collect_logs()
            finally:
                try:
                    self._cleanup.close()
                finally:
                    self._release()
                    self.timings.down_s = time.monotonic() - t0
                    self.progress(f"removed {len(self.removed)} {self.PARTS} in {self.timings.down_s:.2f}s")


@dataclass
class Stack(Lifecycle):
    """A running topology; use as `with Stack(client, spec) as stack:`."""

    client: docker.DockerClient
    spec: StackSpec
    progress: Callable[[str], None] = lambda line: None
    containers: dict[str, Container] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    port: int = 0
    #: the address the balancer's port is published on (a Swarm stack: its node's)
    host: str = "127.0.0.1"
    #: "front" joins the balancer and the replicas; "back" joins the replicas and Redis (a partition cuts it)
    networks: dict[str, Any] = field(default_factory=dict)
    #: the balancer's config the run used
    balancer_conf: str = ""
    #: names of what the teardown removed, also handed to `on_removed`
    removed: list[str] = field(default_factory=list)
    #: balancer container port -> its published 127.0.0.1 port (LISTEN_PORT's is `port`)
    ports: dict[int, int] = field(default_factory=dict)
    on_removed: Callable[[list[str]], None] = lambda names: None
    #: what the engine said changed while the run went: one engine says nothing (a Swarm: its nodes, tasks)
    events: list[tuple[float, str]] = field(default_factory=list)
    #: the replicas in the balancer's upstream now, in order (a topology change adds or removes some)
    serving: list[str] = field(default_factory=list)
    #: the front network's subnet, where the host's connections arrive from (what realip may trust)
    client_net: str = ""

    def __post_init__(self) -> None:
        self._cleanup = ExitStack()
        self._pool = ThreadPoolExecutor(max_workers=8)
        self._stopping = threading.Event()
        self.membership = threading.Lock()
        self.serving = [f"app-{i}" for i in range(1, self.spec.replicas + 1)]

    def _release(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def balancer(self) -> BalancerAdapter:
        return self.spec.balancer

    # -- start -----------------------------------------------------------------------------------------

    def start(self) -> None:
        spec = self.spec
        if spec.host_port is not None:
            check_port_free(spec.host_port)
        t0 = time.monotonic()
        self._cleanup.callback(self._remove_all)
        # Creates and starts are critical: a handle must be ours before a signal is acted on, and dockerd must
        # finish a start before anything removes that container (Docker 20.10 can deadlock when a container
        # is removed while its start runs the network hook: every later call on it then hangs).
        with signals.deferred():
            lb = self._create_all()
            self._start_backends()
        self.client_net = self.networks["front"].attrs["IPAM"]["Config"][0]["Subnet"]
        self.balancer_conf = spec.balancer_conf
        if spec.balancer_conf_for is not None:
            self.balancer_conf = spec.balancer_conf_for(self.client_net)
        write_config(lb, self.balancer, self.balancer_conf)
        self.progress(f"started {len(self.containers) - 1} backend container(s); starting {self.balancer.name}")
        try:
            with signals.deferred():
                lb.start()
        except docker.errors.APIError as exc:
            raise StackError(f"{self.balancer.name} did not start: {exc.explanation or exc}") from None
        self.port = self._published_port(lb)
        self.ports = {LISTEN_PORT: self.port, **{p: self._published_port(lb, p) for p in spec.extra_nginx_ports}}
        # backends first, then what forms them: the pool runs jobs in order, so forming never waits for a
        # worker held by a replica that waits for the formed broker
        waits = [self._pool.submit(self._wait_backend, b) for b in spec.broker_backends]
        if spec.form is not None:
            waits.append(self._pool.submit(self._form, list(waits)))
        waits.append(self._pool.submit(self._wait_balancer, lb))
        waits += [self._pool.submit(self._wait_app, f"app-{i}") for i in range(1, spec.replicas + 1)]
        for w in waits:
            while True:  # short waits, so that a signal is handled between them
                try:
                    w.result(timeout=0.1)
                    break
                except TimeoutError:
                    continue
        self.timings.up_s = time.monotonic() - t0
        self.progress(f"all ready in {self.timings.up_s:.2f}s; {self.balancer.name} on 127.0.0.1:{self.port}")

    def _create_all(self) -> Container:
        """Both networks, then every container (created, not started), in parallel."""
        spec = self.spec
        roles: tuple[str, ...] = ("front", "back") if spec.needs_back else ("front",)
        roles += tuple(dict.fromkeys(r for b in spec.broker_backends for r in b.networks))
        _all([self._pool.submit(self._create_network, role) for role in roles])
        self.progress(f"created {len(roles)} network(s)")
        front = self.networks["front"].name
        jobs = []
        jobs += [self._pool.submit(self._create_backend, b.name, b.image, list(b.command), self.networks["back"].name,
                                   b.networks)
                 for b in spec.broker_backends]
        jobs += [self._pool.submit(self._create_replica, name) for name in self.serving]
        jobs.append(self._pool.submit(
            self._create, self.balancer.name, self.balancer.image(spec.images).tag, self.balancer.command(),
            front, ports={f"{LISTEN_PORT}/tcp": ("127.0.0.1", spec.host_port),
                          **{f"{p}/tcp": ("127.0.0.1", None) for p in spec.extra_nginx_ports}}))
        _all(jobs)
        self.progress(f"created {len(self.containers)} container(s)")
        return self.containers[self.balancer.name]

    def _start_backends(self) -> None:
        """Start Redis and the replicas in parallel (before the balancer: it resolves the replicas' names when
        it loads its config)."""
        _all([self._pool.submit(c.start) for name, c in self.containers.items() if name != self.balancer.name])

    def _create_network(self, role: str) -> None:
        # The Redis side (and a cluster's bus) needs no route out of the host (and is faster without one).
        self.networks[role] = self.client.networks.create(
            f"wslab-{self.spec.run_id}-{role}", driver="bridge", internal=role != "front",
            labels=labels(self.spec.run_id, f"network-{role}"))

    def _create_replica(self, name: str) -> None:
        """A replica: the app image and command, on the front network (and back, with a broker)."""
        spec = self.spec
        self._create_backend(name, spec.app_image or spec.images.app.tag,
                             [*(spec.app_command or ("/opt/venv/bin/python", "-m", spec.app_module)),
                              "--name", name, "--port", str(APP_PORT),
                              "--broker", spec.broker, "--redis", spec.broker_url, *spec.app_args],
                             self.networks["front"].name)

    def _create_backend(self, name: str, image: str, command: list[str], network: str,
                        more: tuple[str, ...] = ()) -> None:
        """Create a backend; a replica joins the broker's network too, a broker's container its `more`."""
        container = self._create(name, image, command, network)
        if name.startswith("app-") and self.spec.needs_back:
            self.networks["back"].connect(container, aliases=[name])
        for role in more:
            self.networks[role].connect(container, aliases=[name])

    def _sysctls(self, name: str) -> dict[str, str]:
        """Namespaced net.* sysctls, which an unprivileged container may set: small socket buffers, and the
        listen backlog's cap for the balancer and the replicas."""
        out = {}
        if name in self.spec.small_buffers:
            out.update({"net.ipv4.tcp_rmem": "4096 16384 16384", "net.ipv4.tcp_wmem": "4096 16384 16384"})
        if self.spec.backlog is not None and (name == self.balancer.name or name.startswith("app-")):
            out["net.core.somaxconn"] = str(self.spec.backlog)
        return out

    def _create(self, name: str, image: str, command: list[str], network: str, **kwargs: Any) -> Container:
        endpoint = self.client.api.create_endpoint_config(aliases=[name])
        if self.spec.nofile is not None:
            kwargs["ulimits"] = [docker.types.Ulimit(name="nofile", soft=self.spec.nofile, hard=self.spec.nofile)]
        if sysctls := self._sysctls(name):
            kwargs["sysctls"] = sysctls
        try:
            container = self.client.containers.create(
                image, command, name=f"wslab-{self.spec.run_id}-{name}", hostname=name,
                labels=labels(self.spec.run_id, name), network=network,
                networking_config={network: endpoint}, **UNPRIVILEGED,
                detach=True, **kwargs)
        except docker.errors.ImageNotFound:
            raise StackError(f"image {image} not found; run `make images`") from None
        self.containers[name] = container
        return container

    def _published_port(self, container: Container, port: int = LISTEN_PORT) -> int:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
        if not bindings:
            raise _balancer_failed(self.balancer, container, f"{self.balancer.name} exited at start:\n{_tail(container)}")
        return int(bindings[0]["HostPort"])

    def _poll(self, what: str, container: Container, probe: Callable[[], bool]) -> None:
        """Poll `probe` until true; fail at once if the container exited, or at the deadline."""
        def gone() -> str | None:
            container.reload()
            if container.status not in {"exited", "dead"}:
                return None
            return f"exited with code {container.attrs['State']['ExitCode']} before it was ready:\n{_tail(container)}"

        wait_ready(what, probe, timeout=self.spec.ready_timeout, where=f"127.0.0.1:{self.port}",
                   stopping=self._stopping, gone=gone, logs=lambda: _tail(container), interval=0.02)

    def _wait_balancer(self, container: Container) -> None:
        def probe() -> bool:
            return http_get(self.port, READY_PATH)[0] == 200

        def reloadable() -> bool:
            code, out = container.exec_run(["cat", "/proc/1/status"])
            return code == 0 and self.balancer.catches_reload(out.decode(errors="replace"))

        try:
            self._poll(self.balancer.name, container, probe)
            if self.balancer.await_reloadable:
                self._poll(f"{self.balancer.name} taking {self.balancer.reload_signal}", container, reloadable)
        except StackError as exc:
            raise _balancer_failed(self.balancer, container, str(exc)) from None

    def _wait_app(self, name: str) -> None:
        self._poll(name, self.containers[name], lambda: http_get(self.port, f"/_lab/{name}/healthz")[0] == 200)

    def _wait_backend(self, backend: Backend) -> None:
        container = self.containers[backend.name]
        self._poll(backend.name, container, lambda: backend.ready_log in container.logs())

    def _form(self, backends: list[Future[Any]]) -> None:
        _all(backends)
        assert self.spec.form is not None
        self.spec.form(self)

    def replica_names(self) -> list[str]:
        """The replicas in the balancer's upstream now."""
        return list(self.serving)

    # -- what topology changes need (running.Scalable) ---------------------------------------------------

    def add_replica(self, name: str) -> None:
        """Make one more replica as the start makes them (image, networks, hardening, labels), start it and
        wait until it is ready, through the balancer's /_lab/<name>/healthz: it serves no client until it joins
        the upstream. Held under `membership`, so the teardown either runs first (then nothing is made) or
        finds it; a create and a start are critical sections, as at the start."""
        if name in self.containers:
            raise StackError(f"{name} exists already in this stack")
        with self.membership:
            if self.stopping:
                raise StackError(f"{name}: the stack is being removed")
            with signals.deferred():
                self._create_replica(name)
        with self.membership:
            if self.stopping:
                raise StackError(f"{name}: the stack is being removed")
            with signals.deferred():
                self.containers[name].start()
        self.progress(f"started {name}")
        self._wait_app(name)

    def wait_replica(self, name: str) -> None:
        """Wait until the replica is ready again (the same probe as at the start)."""
        self._wait_app(name)

    def lb_config(self, replicas: tuple[str, ...]) -> str:
        """The balancer's config with `replicas` in its upstream."""
        if self.spec.balancer_conf_for is None:
            raise StackError(f"this stack's {self.balancer.name} config was given whole: it cannot be rendered for "
                             f"other replicas")
        return self.spec.balancer_conf_for(self.client_net, replicas)

    def set_serving(self, replicas: tuple[str, ...], config: str) -> None:
        """The balancer now runs `config`, with `replicas` in its upstream."""
        self.serving, self.balancer_conf = list(replicas), config

    def node_of(self) -> dict[str, str]:
        """Which node ran each container: one engine, this one."""
        return {name: "local" for name in self.containers}

    def operations(self) -> Operations:
        return Operations(self, self, self.balancer)

    # -- teardown --------------------------------------------------------------------------------------

    def _collect_logs(self) -> None:
        def grab(item: tuple[str, Container]) -> tuple[str, str]:
            name, container = item
            try:
                return name, container.logs(timestamps=True).decode(errors="replace")
            except docker.errors.APIError as exc:
                return name, f"(logs unavailable: {exc})"

        self.logs = dict(self._pool.map(grab, list(self.containers.items())))

    def _remove_all(self) -> None:
        """Remove every container, all at once (a paused one is unpaused first), then the networks.

        What the run's label finds is removed too: anything the run created is gone even if its handle was
        never ours (a create interrupted by an error half-way).
        """
        label = {"label": f"{LABEL}={self.spec.run_id}"}
        known = {c.id: c for c in self.containers.values()}
        known.update({c.id: c for c in self.client.containers.list(all=True, filters=label, sparse=True)})
        names = {c.id: f"wslab-{self.spec.run_id}-{n}" for n, c in self.containers.items()}
        networks = {n.id: n for n in self.networks.values()}
        networks.update({n.id: n for n in self.client.networks.list(filters=label)})
        with self.membership:  # see Lifecycle.membership: the networks in parallel, each one at a time
            # a container the engine no longer answers for is left alone (every call on it would hang)
            answered = self._pool.map(_freeze, known.values())
            stuck = [i for i, ok in zip(known, answered, strict=True) if not ok]
            list(self._pool.map(lambda n: _empty(n, skip=stuck), networks.values()))
            # an empty network goes at once, beside the containers that were on it
            kept = [i for i in known if i not in stuck]
            removals = ([self._pool.submit(_remove_quietly, known[i]) for i in kept]
                        + [self._pool.submit(_remove_network, n) for n in networks.values()])
            if not stuck:
                _all(removals)
            wait(removals)
        gone = [n.name for n, f in zip(networks.values(), removals[len(kept):], strict=True) if f.exception() is None]
        self.removed = [names.get(i, i[:12]) for i in kept] + gone
        self.on_removed(self.removed)
        if stuck:  # everything else is gone, but the networks it is on
            raise wedged(", ".join(names.get(i, i[:12]) for i in stuck))


def _all(futures: list[Future[Any]]) -> None:
    """Wait for every future, then raise the first failure: nothing may still be running after a raise."""
    wait(futures)
    for f in futures:
        f.result()


def _remove_quietly(container: Container) -> None:
    """Force-remove a container (unpausing it first if need be); gone or going already is fine."""
    try:
        try:
            container.remove(force=True)
        except docker.errors.APIError as exc:
            if "paused" not in str(exc).lower():
                raise
            container.unpause()
            container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
    except NO_ANSWER:
        raise wedged(container.name or container.attrs.get("Names", [container.id[:12]])[0].lstrip("/")) from None


#: how long a teardown waits for an exec in a container to end before it kills the container instead
EXEC_WAIT_S = 5.0


def _exec_running(container: Container) -> bool:
    container.reload()
    return any(container.client.api.exec_inspect(e).get("Running")
               for e in container.attrs.get("ExecIDs") or [])


def _freeze(container: Container) -> bool:
    """Pause a running container before it leaves its networks, so that nothing in it acts meanwhile: a
    replica cut off while it was still connecting to Redis kept asking the engine's resolver, and its
    removal then took ~4 s instead of 0.2 s. One not running, or paused already, is left as it is.

    Never while an exec runs in it (an interrupted probe's `redis-cli`, a fault's heal still under way):
    Docker 20.10 wedges a container paused with an exec in flight, and every later call on it hangs. The
    teardown waits for the exec to end; one still running after EXEC_WAIT_S gets its container killed.
    False when the engine did not answer for the container (it is wedged)."""
    try:
        deadline = time.monotonic() + EXEC_WAIT_S
        while _exec_running(container):
            if time.monotonic() > deadline:
                container.kill()
                return True
            time.sleep(0.05)
        container.pause()
    except docker.errors.APIError:
        pass
    except NO_ANSWER:
        return False
    return True


def _empty(network: Any, *, skip: Collection[str] = ()) -> None:
    """Disconnect every container from `network`, one after the other, but those in `skip` (wedged). A
    container that will not leave (it is gone already) leaves when it is removed."""
    try:
        network.reload()
    except docker.errors.NotFound:
        return
    for container_id in network.attrs.get("Containers") or {}:
        if container_id in skip:
            continue
        try:
            network.disconnect(container_id, force=True)
        except docker.errors.APIError:
            pass


def remove_when_free(thing: Any, *, busy: str = "", timeout: float = 10.0) -> None:
    """Remove a network (or a Swarm config); while the engine still holds it for a removal already under
    way (an error containing `busy`, e.g. "active endpoints"; "" for any), try again until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            thing.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if busy not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _remove_network(network: Any) -> None:
    remove_when_free(network, busy="active endpoints")


def remove_leftovers(client: docker.DockerClient, run_id: str | None = None,
                     owner: str | None = None) -> tuple[int, int]:
    """Remove every container and network the lab labelled (one run's, or all runs', or one owner's).
    Returns counts."""
    label = f"{LABEL}={run_id}" if run_id else LABEL
    selector: str | list[str] = [label, f"{OWNER_LABEL}={owner}"] if owner else label
    # sparse: no per-container inspect, which would race with a removal already under way
    containers = client.containers.list(all=True, filters={"label": selector}, sparse=True)
    unanswered = []
    for c in containers:
        try:
            _remove_quietly(c)
        except EngineError:  # wedged: the others still go
            unanswered.append(c.attrs["Names"][0].lstrip("/"))
    networks = client.networks.list(filters={"label": selector})
    stuck = []
    for n in networks:
        try:
            _remove_network(n)
        except docker.errors.APIError as exc:
            stuck.append(f"{n.name} ({exc.explanation or exc})")
    if unanswered:  # the networks it is on stay with it
        raise wedged(", ".join(unanswered))
    if stuck:  # everything else is gone; say what the engine kept, and what clears it
        raise StackError(f"the engine refused to remove network(s) {', '.join(stuck)}: it counts an endpoint that "
                         "is gone (see Lifecycle.membership) until dockerd restarts: `systemctl restart docker`, or "
                         "for the dockerd the lab started, `kill $(cat /var/run/docker.pid)` then `make images clean`")
    return len(containers), len(networks)
