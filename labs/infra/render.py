"""Render nginx configs from templates/nginx/ with jinja2. Pure: values are validated before they reach
a template, and templates only format (StrictUndefined turns a missing value into an error)."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..errors import LabError
from ..scenario import Balance
from ..settings import TEMPLATES_DIR

HOST_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: a cookie name nginx can read as `$cookie_<name>` and that cannot leave its directive
COOKIE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
#: WebSocket pings every 20 s, Engine.IO every 25 s with a 20 s timeout: idle sockets must outlive both.
MIN_READ_TIMEOUT = 46
#: `sticky cookie` left nginx's commercial subscription in this release
NATIVE_STICKY_SINCE = (1, 29, 6)
#: the response header in which a replica names itself (the open-source cookie construction reads it)
REPLICA_HEADER = "X-Wslab-Replica"
#: nginx worker processes: one per core is usual; more only to spread open files (each holds at most its
#: `worker_rlimit_nofile`, and the host caps every process), so the bound is generous but finite
MAX_WORKERS = 32
MAX_LISTEN_PORTS = 32
#: `worker_shutdown_timeout`, in milliseconds: bounded (ten minutes), never "for ever" by accident
MAX_SHUTDOWN_TIMEOUT_MS = 600_000


class RenderError(LabError):
    pass


class Sticky(enum.Enum):
    """How cookie stickiness is built: nginx's own `sticky cookie`, or open-source parts that act the same."""

    NATIVE = "native"
    MAP = "map"

    @classmethod
    def for_version(cls, version: tuple[int, int, int]) -> Sticky:
        return cls.NATIVE if version >= NATIVE_STICKY_SINCE else cls.MAP

    def describe(self) -> str:
        if self is Sticky.NATIVE:
            return "native `sticky cookie` (nginx >= 1.29.6)"
        return (f"open-source construction (nginx < 1.29.6 has no `sticky cookie`): the replica names itself "
                f"in {REPLICA_HEADER}, nginx turns it into a cookie, a map from the cookie picks that replica's "
                f"upstream (the others as backups)")


def parse_nginx_version(text: str) -> tuple[int, int, int]:
    """`nginx version: nginx/1.22.1` (what `nginx -v` prints) -> (1, 22, 1)."""
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise RenderError(f"cannot read an nginx version from {text.strip()[:80]!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Upstream:
    name: str
    host: str
    port: int

    def __post_init__(self) -> None:
        for value in (self.name, self.host):
            if not isinstance(value, str) or not HOST_RE.fullmatch(value):
                raise RenderError(f"bad upstream name {value!r}: lowercase letters, digits and dashes only")
        if not 1 <= self.port <= 65535:
            raise RenderError(f"bad upstream port {self.port}: must be 1..65535")


def cidr(value: str) -> str:
    """A network in CIDR form, normalised; anything else (a hostname, a ';', a space) is refused."""
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise RenderError(f"bad trusted client network {value!r}: need a CIDR such as 172.18.0.0/16") from None


@dataclass(frozen=True)
class NginxConfig:
    replicas: tuple[Upstream, ...]
    balance: Balance = Balance.ROUND_ROBIN
    listen_port: int = 8080
    read_timeout: int = 75
    #: how long nginx tries to reach a replica before the next one (a killed replica's address is silent)
    connect_timeout_ms: int = 1000
    workers: int = 1
    worker_connections: int = 4096
    #: cookie stickiness (balance = cookie): the cookie's name and how it is built
    cookie_name: str = "wslab_srv"
    sticky: Sticky = Sticky.MAP
    #: when set, X-Forwarded-For is trusted, but only from this network (the lab's own client network)
    realip_from: str | None = None
    #: more ports nginx listens on besides `listen_port` (each can be published on its own host port)
    extra_listen_ports: tuple[int, ...] = ()
    #: `listen ... reuseport`: one listening socket per worker, the kernel spreads connections over them
    reuseport: bool = False
    #: `worker_rlimit_nofile`: each worker raises its open-file limit to this (None: inherited)
    worker_rlimit_nofile: int | None = None
    #: one access-log line per request; off for runs of many thousands of connections
    access_log: bool = True
    #: pending connections each listening socket queues (`listen ... backlog=`; None: nginx's 511), at most
    #: net.core.somaxconn in nginx's network namespace
    backlog: int | None = None
    #: failed attempts after which nginx leaves a replica out for `fail_timeout` s; 0: never (nginx's
    #: default is 1 for 10 s)
    max_fails: int = 0
    fail_timeout: int = 10
    #: `worker_shutdown_timeout`: after a reload, the old workers' connections are cut this long after they
    #: were told to stop. nginx reads it from the config the old workers started with, so it is written from
    #: the start. None: nginx's default, old workers live as long as their connections
    shutdown_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.replicas) <= 32:
            raise RenderError(f"need 1..32 upstream replicas, got {len(self.replicas)}")
        if not isinstance(self.balance, Balance):
            raise RenderError(f"unknown balancing policy {self.balance!r} "
                              f"(one of: {', '.join(b.value for b in Balance)})")
        if not 1024 <= self.listen_port <= 65535:
            raise RenderError(f"bad listen port {self.listen_port}: must be 1024..65535")
        if not MIN_READ_TIMEOUT <= self.read_timeout <= 86400:
            raise RenderError(f"read_timeout {self.read_timeout}s must be {MIN_READ_TIMEOUT}..86400 s")
        if not 100 <= self.connect_timeout_ms <= 60_000:
            raise RenderError(f"connect_timeout_ms {self.connect_timeout_ms} must be 100..60000")
        if not 1 <= self.workers <= MAX_WORKERS or not 64 <= self.worker_connections <= 65536:
            raise RenderError(f"workers must be 1..{MAX_WORKERS} and worker_connections 64..65536")
        ports = self.listen_ports
        if (len(ports) > MAX_LISTEN_PORTS or len(set(ports)) != len(ports)
                or not all(isinstance(p, int) and 1024 <= p <= 65535 for p in ports)):
            raise RenderError(f"bad extra listen ports {self.extra_listen_ports!r}: at most {MAX_LISTEN_PORTS - 1} "
                              f"distinct ports in 1024..65535, none equal to listen_port {self.listen_port}")
        if self.worker_rlimit_nofile is not None and not 1024 <= self.worker_rlimit_nofile <= 1_048_576:
            raise RenderError(f"worker_rlimit_nofile {self.worker_rlimit_nofile} must be 1024..1048576")
        if (self.worker_rlimit_nofile is not None
                and self.worker_connections > self.worker_rlimit_nofile):
            raise RenderError(f"worker_connections {self.worker_connections} exceeds worker_rlimit_nofile "
                              f"{self.worker_rlimit_nofile}: a worker would run out of open files first")
        if self.backlog is not None and not 1 <= self.backlog <= 65535:
            raise RenderError(f"backlog {self.backlog} must be 1..65535")
        if not 0 <= self.max_fails <= 1000 or not 1 <= self.fail_timeout <= 3600:
            raise RenderError(f"max_fails {self.max_fails} must be 0..1000 and fail_timeout {self.fail_timeout} "
                              f"1..3600 s")
        if not isinstance(self.cookie_name, str) or not COOKIE_RE.fullmatch(self.cookie_name):
            raise RenderError(f"bad cookie name {self.cookie_name!r}: must match {COOKIE_RE.pattern}")
        if not isinstance(self.sticky, Sticky):
            raise RenderError(f"unknown cookie stickiness {self.sticky!r} (one of: native, map)")
        if self.realip_from is not None:
            object.__setattr__(self, "realip_from", cidr(self.realip_from))
        if self.shutdown_timeout_ms is not None and (
                isinstance(self.shutdown_timeout_ms, bool) or not isinstance(self.shutdown_timeout_ms, int)
                or not 1 <= self.shutdown_timeout_ms <= MAX_SHUTDOWN_TIMEOUT_MS):
            raise RenderError(f"shutdown_timeout_ms {self.shutdown_timeout_ms!r} must be an integer "
                              f"1..{MAX_SHUTDOWN_TIMEOUT_MS}")
        if len({r.port for r in self.replicas}) != 1:
            raise RenderError(f"the replicas must share one port, got {sorted({r.port for r in self.replicas})}")

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every port nginx listens on, `listen_port` first."""
        return (self.listen_port, *tuple(self.extra_listen_ports))


def for_replicas(count: int, *, balance: Balance = Balance.ROUND_ROBIN, port: int = 8000,
                 cookie_name: str = "wslab_srv", sticky: Sticky = Sticky.MAP,
                 realip_from: str | None = None) -> NginxConfig:
    """The lab's usual upstream set: app-1..app-N on their network aliases."""
    return for_names(tuple(f"app-{i}" for i in range(1, count + 1)), balance=balance, port=port,
                     cookie_name=cookie_name, sticky=sticky, realip_from=realip_from)


def for_names(names: tuple[str, ...], *, balance: Balance = Balance.ROUND_ROBIN, port: int = 8000,
              cookie_name: str = "wslab_srv", sticky: Sticky = Sticky.MAP, realip_from: str | None = None,
              shutdown_timeout_ms: int | None = None) -> NginxConfig:
    """An upstream of the named replicas, each on its network alias (after a scale-out or scale-in the
    names are no longer app-1..app-N)."""
    return NginxConfig(tuple(Upstream(name, name, port) for name in names), balance=balance,
                       cookie_name=cookie_name, sticky=sticky, realip_from=realip_from,
                       shutdown_timeout_ms=shutdown_timeout_ms)


def render_template(balancer: str, name: str, templates: Path, **values: object) -> str:
    """One balancer's template (`templates/<balancer>/<name>`) formatted with validated values; a missing
    value is an error (StrictUndefined), never an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates / balancer),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template(name).render(**values)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"{balancer} template not found: {exc.name} under {templates / balancer}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"{balancer} template error: {exc}") from None


def render_nginx(config: NginxConfig, *, templates: Path = TEMPLATES_DIR) -> str:
    return render_template(
        "nginx", "nginx.conf.j2", templates,
        replicas=config.replicas, balance=config.balance.value, listen_ports=config.listen_ports,
        reuseport=config.reuseport, worker_rlimit_nofile=config.worker_rlimit_nofile,
        access_log=config.access_log, backlog=config.backlog, max_fails=config.max_fails,
        fail_timeout=config.fail_timeout,
        read_timeout=config.read_timeout, connect_timeout_ms=config.connect_timeout_ms,
        workers=config.workers, worker_connections=config.worker_connections,
        cookie_name=config.cookie_name, sticky=config.sticky.value,
        sticky_map=config.balance is Balance.COOKIE and config.sticky is Sticky.MAP,
        replica_header=REPLICA_HEADER, realip_from=config.realip_from,
        replica_port=config.replicas[0].port, shutdown_timeout_ms=config.shutdown_timeout_ms,
    )
