"""Render HAProxy configs from templates/haproxy/ with jinja2, as `render` does nginx's. Pure: values are
validated here before they reach a template, and templates only format (StrictUndefined turns a missing
value into an error). Every directive is HAProxy 2.6's (Debian 12), as its configuration manual gives it.

A topology change renders the config again with other servers (`for_names`): each server's `id` is pinned to
its number (app-3 is `id 3`), because HAProxy places a server on a consistent-hash ring by its id, and an id
it assigns itself is the server's position in the list: with app-2 gone, app-3 would take app-2's points."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..scenario import MAX_SOFT_STOP_S, Balance
from ..settings import TEMPLATES_DIR
from .render import COOKIE_RE, MIN_READ_TIMEOUT, RenderError, Upstream, cidr, render_template

#: `maxconn` when none is given: half nginx's default `worker_connections` (4096), which counts both sides of
#: a proxied connection where HAProxy's counts the client side only (a stack's comes from its sizing)
DEFAULT_MAXCONN = 2048
#: `nbthread` at most; a stack runs HAProxy with one thread (one process under the 20,000-file limit)
MAX_THREADS = 32
#: a server's name, whose number is its `id` (HAProxy's ids are positive)
SERVER_RE = re.compile(r"^app-([1-9][0-9]{0,3})$")


@dataclass(frozen=True)
class HaproxyConfig:
    replicas: tuple[Upstream, ...]
    balance: Balance = Balance.ROUND_ROBIN
    listen_port: int = 8080
    #: seconds of silence a connection survives: plain requests (a long-poll waits 25 s) and tunnels alike
    read_timeout: int = 75
    #: how long HAProxy tries to reach a replica before it tries another (a killed replica's address is silent)
    connect_timeout_ms: int = 1000
    threads: int = 1
    #: client connections at once, globally and in the one frontend
    maxconn: int = DEFAULT_MAXCONN
    #: cookie stickiness (balance = cookie): the cookie HAProxy inserts, naming the server
    cookie_name: str = "wslab_srv"
    #: when set, X-Forwarded-For is trusted, but only from this network (the lab's own client network)
    realip_from: str | None = None
    #: a soft stop's bound and the window its closes are spread over, in milliseconds (None: not set)
    hard_stop_after_ms: int | None = None
    close_spread_time_ms: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.replicas) <= 32 or not all(isinstance(r, Upstream) for r in self.replicas):
            raise RenderError(f"need 1..32 upstream replicas, got {len(self.replicas)}")
        if not isinstance(self.balance, Balance):
            raise RenderError(f"unknown balancing policy {self.balance!r} "
                              f"(one of: {', '.join(b.value for b in Balance)})")
        if not _int_in(self.listen_port, 1024, 65535):
            raise RenderError(f"bad listen port {self.listen_port!r}: must be 1024..65535")
        if not _int_in(self.read_timeout, MIN_READ_TIMEOUT, 86400):
            raise RenderError(f"read_timeout {self.read_timeout!r}s must be {MIN_READ_TIMEOUT}..86400 s")
        if not _int_in(self.connect_timeout_ms, 100, 60_000):
            raise RenderError(f"connect_timeout_ms {self.connect_timeout_ms!r} must be 100..60000")
        if len({r.name for r in self.replicas}) != len(self.replicas):
            raise RenderError(f"the servers' names repeat: {[r.name for r in self.replicas]}")
        for r in self.replicas:
            if not SERVER_RE.fullmatch(r.name):
                raise RenderError(f"bad server name {r.name!r}: HAProxy's servers are app-N (N is the server's id)")
        if len({r.port for r in self.replicas}) != 1:
            raise RenderError(f"the replicas must share one port, got {sorted({r.port for r in self.replicas})}")
        if not _int_in(self.threads, 1, MAX_THREADS) or not _int_in(self.maxconn, 32, 65536):
            raise RenderError(f"threads must be 1..{MAX_THREADS} and maxconn 32..65536")
        if not isinstance(self.cookie_name, str) or not COOKIE_RE.fullmatch(self.cookie_name):
            raise RenderError(f"bad cookie name {self.cookie_name!r}: must match {COOKIE_RE.pattern}")
        if self.realip_from is not None:
            object.__setattr__(self, "realip_from", cidr(self.realip_from))
        longest = int(MAX_SOFT_STOP_S * 1000)
        for key in ("hard_stop_after_ms", "close_spread_time_ms"):
            value = getattr(self, key)
            if value is not None and not _int_in(value, 1, longest):
                raise RenderError(f"{key} {value!r} must be 1..{longest}")
        hard, spread = self.hard_stop_after_ms, self.close_spread_time_ms
        if hard is not None and spread is not None and spread >= hard:
            raise RenderError(f"close_spread_time_ms {spread} must be less than hard_stop_after_ms {hard}")


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, round(seconds * 1000))


def server_id(name: str) -> int:
    """The `id` of server app-N: N, whatever servers come before it."""
    match = SERVER_RE.fullmatch(name)
    if match is None:
        raise RenderError(f"bad server name {name!r}: HAProxy's servers are app-N (N is the server's id)")
    return int(match.group(1))


def for_replicas(count: int, *, balance: Balance = Balance.ROUND_ROBIN, port: int = 8000,
                 cookie_name: str = "wslab_srv", realip_from: str | None = None,
                 hard_stop_after: float | None = None, close_spread_time: float | None = None,
                 maxconn: int = DEFAULT_MAXCONN) -> HaproxyConfig:
    """The lab's usual server set: app-1..app-N on their network aliases; the soft-stop knobs in seconds."""
    return for_names(tuple(f"app-{i}" for i in range(1, count + 1)), balance=balance, port=port,
                     cookie_name=cookie_name, realip_from=realip_from, hard_stop_after=hard_stop_after,
                     close_spread_time=close_spread_time, maxconn=maxconn)


def for_names(names: tuple[str, ...], *, balance: Balance = Balance.ROUND_ROBIN, port: int = 8000,
              cookie_name: str = "wslab_srv", realip_from: str | None = None,
              hard_stop_after: float | None = None, close_spread_time: float | None = None,
              maxconn: int = DEFAULT_MAXCONN) -> HaproxyConfig:
    """A backend of the named replicas, each on its network alias (after a scale-out or a scale-in the names
    are no longer app-1..app-N); the soft-stop knobs in seconds."""
    return HaproxyConfig(tuple(Upstream(name, name, port) for name in names),
                         balance=balance, cookie_name=cookie_name, realip_from=realip_from, maxconn=maxconn,
                         hard_stop_after_ms=_ms(hard_stop_after), close_spread_time_ms=_ms(close_spread_time))


def render_haproxy(config: HaproxyConfig, *, templates: Path = TEMPLATES_DIR) -> str:
    return render_template(
        "haproxy", "haproxy.cfg.j2", templates,
        replicas=config.replicas, ids={r.name: server_id(r.name) for r in config.replicas},
        replica_port=config.replicas[0].port, balance=config.balance.value, listen_port=config.listen_port,
        read_timeout=config.read_timeout, connect_timeout_ms=config.connect_timeout_ms,
        threads=config.threads, maxconn=config.maxconn, cookie_name=config.cookie_name,
        cookie=config.balance is Balance.COOKIE, realip_from=config.realip_from,
        hard_stop_after_ms=config.hard_stop_after_ms, close_spread_time_ms=config.close_spread_time_ms,
    )
