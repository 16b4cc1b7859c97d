"""Render nginx configs from templates/nginx/ with jinja2. Pure: values are validated before they reach
a template, and templates only format (StrictUndefined turns a missing value into an error)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import LabError
from .scenario import Balance
from .settings import TEMPLATES_DIR

HOST_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: WebSocket pings every 20 s, Engine.IO every 25 s with a 20 s timeout: idle sockets must outlive both.
MIN_READ_TIMEOUT = 46


class RenderError(LabError):
    pass


@dataclass(frozen=True)
class Upstream:
    name: str
    host: str
    port: int

    def __post_init__(self) -> None:
        for value in (self.name, self.host):
            if not HOST_RE.match(value):
                raise RenderError(f"bad upstream name {value!r}: lowercase letters, digits and dashes only")
        if not 1 <= self.port <= 65535:
            raise RenderError(f"bad upstream port {self.port}: must be 1..65535")


@dataclass(frozen=True)
class NginxConfig:
    replicas: tuple[Upstream, ...]
    balance: Balance = Balance.ROUND_ROBIN
    listen_port: int = 8080
    read_timeout: int = 75
    workers: int = 1
    worker_connections: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= len(self.replicas) <= 32:
            raise RenderError(f"need 1..32 upstream replicas, got {len(self.replicas)}")
        if not isinstance(self.balance, Balance):
            raise RenderError(f"unknown balancing policy {self.balance!r}")
        if not 1024 <= self.listen_port <= 65535:
            raise RenderError(f"bad listen port {self.listen_port}: must be 1024..65535")
        if not MIN_READ_TIMEOUT <= self.read_timeout <= 86400:
            raise RenderError(f"read_timeout {self.read_timeout}s must be {MIN_READ_TIMEOUT}..86400 s")
        if not 1 <= self.workers <= 8 or not 64 <= self.worker_connections <= 65536:
            raise RenderError("workers must be 1..8 and worker_connections 64..65536")


def for_replicas(count: int, *, balance: Balance = Balance.ROUND_ROBIN, port: int = 8000) -> NginxConfig:
    """The lab's usual upstream set: app-1..app-N on their network aliases."""
    return NginxConfig(tuple(Upstream(f"app-{i}", f"app-{i}", port) for i in range(1, count + 1)),
                       balance=balance)


def render_nginx(config: NginxConfig, *, templates: Path = TEMPLATES_DIR) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates / "nginx"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template("nginx.conf.j2").render(
            replicas=config.replicas, balance=config.balance.value, listen_port=config.listen_port,
            read_timeout=config.read_timeout, workers=config.workers,
            worker_connections=config.worker_connections,
        )
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"nginx template not found: {exc.name} under {templates / 'nginx'}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"nginx template error: {exc}") from None
