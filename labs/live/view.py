"""The live terminal view of a running stack: per replica its connections, rooms, messages in and out and
broker state; for Redis its channels and subscribers, or its streams and their lengths; the faults applied.

`poll` reads (each replica's /healthz through nginx, one Lua script in Redis); the rest is pure, from those
readings to rich renderables, so the rows are tested with literal /healthz bodies.

Redis is read over TCP from the host (its network is internal, not unreachable from the host), never with
`docker exec`: an exec that is running when `fault pause-redis` freezes the container is frozen with it,
and Docker 20.10 then hangs every later call on that container, the unpause included.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..infra import inspect
from ..infra.readiness import http_get
from ..infra.running import RunningStack
from .state import LiveState

#: every channel with its subscriber count, every room stream with its length, in one round trip
#: a replica's /healthz slower than this reads "no answer" (the view refreshes about every second)
HEALTH_TIMEOUT_S = 0.8
BROKER_SCRIPT = """
local out = {}
for _, ch in ipairs(redis.call('PUBSUB', 'CHANNELS')) do
  local n = redis.call('PUBSUB', 'NUMSUB', ch)
  table.insert(out, 'channel'); table.insert(out, ch); table.insert(out, n[2])
end
for _, key in ipairs(redis.call('KEYS', 'stream:*')) do
  table.insert(out, 'stream'); table.insert(out, key); table.insert(out, redis.call('XLEN', key))
end
return out
"""


@dataclass
class Snapshot:
    """One reading of the stack: /healthz per replica (or why there is none) and Redis's view."""

    replicas: dict[str, dict[str, Any] | str]
    #: ("channel" | "stream", name, subscribers | length)
    broker: list[tuple[str, str, int]] = field(default_factory=list)
    #: why Redis could not be read ("" when it was, or when the stack has no Redis)
    broker_error: str = ""
    at: float = field(default_factory=time.time)


def read_healthz(port: int, name: str, host: str = "127.0.0.1") -> dict[str, Any] | str:
    """A replica's /healthz body (also on 503: the replica answers, its broker does not), or why there is
    none: "down" (nginx cannot reach it: killed, stopped) or "no answer" (it is there but silent: paused, or
    waiting on a frozen Redis)."""
    try:
        status, body = http_get(port, f"/_lab/{name}/healthz", timeout=HEALTH_TIMEOUT_S, host=host)
    except TimeoutError:
        return "no answer"
    except inspect.UNREACHABLE:
        return "down"
    try:
        data = json.loads(body) if status in {200, 503} else None
    except ValueError:
        data = None
    return data if isinstance(data, dict) else "down"


def parse_broker(text: str) -> list[tuple[str, str, int]]:
    """BROKER_SCRIPT's reply, one item a line (kind, name, count per three lines), as tuples."""
    lines = text.splitlines()
    out = []
    for i in range(0, len(lines) - 2, 3):
        kind, name, count = lines[i : i + 3]
        if kind in {"channel", "stream"} and count.strip().lstrip("-").isdigit():
            out.append((kind, name, int(count)))
    return out


class BrokerProbe:
    """Redis read from the host at its address on the stack's Redis network (looked up again after a
    failure: a restarted container may get another address)."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.client: redis.Redis | None = None

    def read(self) -> list[tuple[str, str, int]]:
        if self.client is None:
            container = self.stack.containers["redis"]
            container.reload()
            address = container.attrs["NetworkSettings"]["Networks"][self.stack.networks["back"].name]["IPAddress"]
            if not address:  # stopped (restart-redis): no address until it runs again
                raise redis.exceptions.ConnectionError(f"redis is {container.status}")
            # no retries: a paused Redis must cost one timeout per refresh, not redis-py's backoff
            self.client = redis.Redis(host=address, socket_timeout=0.5, socket_connect_timeout=0.5,
                                      decode_responses=True, retry=Retry(NoBackoff(), 0))
        try:
            reply = self.client.eval(BROKER_SCRIPT, 0)
        except (redis.exceptions.RedisError, OSError):
            self.client.close()
            self.client = None
            raise
        return parse_broker("\n".join(str(item) for item in reply))


def poll(stack: RunningStack, pool: ThreadPoolExecutor, probe: BrokerProbe | None,
         names: list[str] | None = None) -> Snapshot:
    """Read every replica's /healthz (in parallel) and Redis, about once a second: the replicas `names` (what
    the state file says serves: `scale` and `deploy` change it from another process), else the stack's."""
    names = stack.replica_names() if names is None else names
    replicas = dict(zip(names, pool.map(lambda n: read_healthz(stack.port, n, stack.host), names)))
    for name, h in replicas.items():
        if isinstance(h, str):  # why not: Docker's word for it (exited, paused), else "no answer"
            replicas[name] = container_state(stack, name) or h
    snap = Snapshot(replicas)
    if probe is not None:
        try:
            snap.broker = probe.read()
        except (redis.exceptions.RedisError, OSError, KeyError) as exc:
            snap.broker_error = f"no answer ({type(exc).__name__})"
    return snap


def container_state(stack: RunningStack, name: str) -> str:
    """The container's state when it is not running (exited, paused, restarting), else "" (also for a replica
    another process added: this stack has no handle on it)."""
    try:
        container = stack.containers[name]
        container.reload()
        return "" if container.status == "running" else str(container.status)
    except (docker.errors.APIError, KeyError):
        return ""


def connected(h: dict[str, Any] | str) -> int | None:
    """A replica's WebSocket connections now, from its /healthz body (None: it did not answer)."""
    if isinstance(h, str):
        return None
    if h.get("app") == "socketio":
        return int(h.get("connections", 0)) - int(h.get("disconnects", 0))
    rooms: dict[str, int] = h.get("rooms", {})
    return sum(rooms.values())


def replica_row(name: str, h: dict[str, Any] | str, broker: str = "none") -> tuple[str, ...]:
    """replica, state, connections now (total), rooms, messages in, messages out, broker (the stack's
    `broker` and the replica's own counters of it)."""
    if isinstance(h, str):
        why = {"down": "nginx cannot reach it", "no answer": f"nothing within {HEALTH_TIMEOUT_S:g}s"}.get(
            h, "its container is not running")
        return (name, h, "-", "-", "-", "-", why)
    state = "up" if h.get("ok") else "broker down"
    now = connected(h)
    if h.get("app") == "socketio":
        broker = str(h.get("manager", "?"))
        return (name, state, f"{now} ({h.get('connections', 0)})", f"{h.get('joins', 0)} joins",
                str(h.get("received", 0)), "-", broker)
    rooms: dict[str, int] = h.get("rooms", {})
    room_text = ", ".join(f"{r}:{n}" for r, n in sorted(rooms.items())) or "-"
    broker_parts = ["none (in memory)"] if broker == "none" else [f"pub {h.get('published', 0)}"]
    for key, label in (("published_to_nobody", "to nobody"), ("publish_failed", "failed"),
                       ("subscriber_rebuilds", "resubscribed"), ("deaf_detected", "deaf"),
                       ("replayed", "replayed")):
        if h.get(key):
            broker_parts.append(f"{label} {h[key]}")
    return (name, state, f"{now} ({h.get('connections', 0)})", room_text, str(h.get("received", 0)),
            str(h.get("delivered_frames", 0)), ", ".join(broker_parts))


def render(state: LiveState, snap: Snapshot) -> Group:
    """The whole view: a header line, the replica table, Redis's view, the faults applied."""
    header = Text(f"{state.scenario}  run {state.run_id}  {state.url()}  "
                  f"{time.strftime('%H:%M:%S', time.localtime(snap.at))}  (Ctrl-C or `python -m labs down` "
                  f"removes everything)", style="bold")
    replicas = Table(title="replicas (through nginx)", title_justify="left")
    for column in ("replica", "state", "connections (total)", "rooms", "in", "out", "broker"):
        replicas.add_column(column)
    for name, h in snap.replicas.items():
        row = replica_row(name, h, state.broker)
        style = "" if row[1] == "up" else "yellow" if row[1] in {"no answer", "broker down"} else "red"
        replicas.add_row(*row, style=style)
    parts: list[Any] = [header, replicas]
    if state.change:
        parts.append(Text(f"under way: {state.change}", style="yellow bold"))
    elif state.changed:
        parts.append(Text(f"last change: {state.changed}", style="dim"))
    if state.broker != "none":
        redis = Table(title=f"redis ({state.broker})", title_justify="left")
        redis.add_column("channel / stream")
        redis.add_column("subscribers / length", justify="right")
        if snap.broker_error:
            redis.add_row(Text(f"unreachable: {snap.broker_error}", style="red"), "-")
        for kind, name, count in snap.broker:
            redis.add_row(f"{kind} {name}", str(count))
        if not snap.broker and not snap.broker_error:
            redis.add_row("(no channel subscribed, no stream yet)", "")
        parts.append(redis)
    now = time.time()
    faults = [f"{f.kind} {f.target} for {now - f.applied_at:.0f}s" for f in state.faults]
    parts.append(Text("faults: " + ("; ".join(faults) + "  (`python -m labs heal` undoes them)" if faults
                                    else "none (`python -m labs fault KIND TARGET`)"),
                      style="red bold" if faults else "dim"))
    return Group(*parts)
