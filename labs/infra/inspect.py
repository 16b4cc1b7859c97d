"""What the harness reads from a running stack: replica health and counters, versions, container states,
and Redis's own view of who is subscribed."""

from __future__ import annotations

import http.client
import json
from typing import Any

from docker.models.containers import Container

from ..errors import StackError
from .readiness import http_get
from .running import Handles, RunningStack
from .usage import container_cpu

#: a replica that does not answer (killed, or the balancer cannot reach it)
UNREACHABLE = (OSError, http.client.HTTPException, ValueError)


def health(stack: RunningStack, name: str) -> dict[str, Any]:
    """The replica's /healthz through the balancer: {"status": 200, ...counters}; {"status": None, "error"} if gone."""
    try:
        status, body = http_get(stack.port, f"/_lab/{name}/healthz", host=stack.host)
        return {"status": status, **(json.loads(body) if status == 200 else {})}
    except UNREACHABLE as exc:
        return {"status": None, "error": repr(exc)}


def address(stack: Handles, name: str, role: str) -> str:
    """`name`'s address on the stack's `role` network (front, back), which this host reaches over the
    network's bridge when the stack runs on this engine."""
    container = stack.containers[name]
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][stack.networks[role].name]["IPAddress"])


def versions(stack: RunningStack, replicas: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Versions of the parts that ran, read from the parts themselves (replicas: their /healthz)."""
    out = {"docker engine": stack.client.version().get("Version", "?")}
    balancer = stack.balancer
    code, text = stack.containers[balancer.name].exec_run(list(balancer.version_command))
    out[balancer.name] = balancer.version(text.decode(errors="replace"))
    redis = next((n for n in ("redis", "redis-1") if n in stack.containers), None)
    if redis is not None:
        code, text = stack.containers[redis].exec_run(["redis-server", "--version"])
        out["redis"] = text.decode(errors="replace").split()[2].removeprefix("v=")
    if "nats" in stack.containers:
        code, text = stack.containers["nats"].exec_run(["nats-server", "--version"])
        out["nats-server"] = text.decode(errors="replace").strip().removeprefix("nats-server: v")
    answered = [r.get("versions", {}) for r in replicas.values() if r.get("versions")]
    for key, value in (answered[0] if answered else {}).items():
        out[f"app {key}"] = value
    return out


def states(stack: RunningStack) -> dict[str, str]:
    """Each container's state now (running, paused, exited…): after the faults, all must be running."""
    def state(container: Container) -> str:
        container.reload()
        return str(container.status)

    return {name: state(c) for name, c in stack.containers.items()}


def redis_cli(stack: Handles, *args: str, node: str = "redis") -> str:
    code, out = stack.containers[node].exec_run(["redis-cli", *args])
    text = out.decode(errors="replace").strip()
    if code != 0:
        raise StackError(f"redis-cli {' '.join(args)} failed ({code}): {text}")
    return text


def pubsub_subscriptions(stack: RunningStack) -> dict[str, int]:
    """Redis's own view: channel subscriptions held by each named subscriber connection (a replica names
    its connections after itself), from `CLIENT LIST TYPE pubsub`."""
    out: dict[str, int] = {}
    for line in redis_cli(stack, "CLIENT", "LIST", "TYPE", "pubsub").splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        name = fields.get("name", "")
        if name:
            out[name] = out.get(name, 0) + int(fields.get("sub", "0"))
    return out


#: the sequence number of a room's first entry still in its stream (the seq counter + 1 when it is empty)
FIRST_SEQ = """local e = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #e == 0 then return tonumber(redis.call('GET', KEYS[2]) or '0') + 1 end
local f = e[1][2]
for i = 1, #f, 2 do if f[i] == 'n' then return tonumber(f[i + 1]) end end
return -1"""


def stream_first_seq(stack: RunningStack, rooms: list[str]) -> dict[str, int | None]:
    """Per room, the sequence number of the first entry its stream still holds: what a replica says was
    trimmed must lie below it. None for a room Redis did not answer for."""
    out: dict[str, int | None] = {}
    for room in rooms:
        try:
            value = int(redis_cli(stack, "EVAL", FIRST_SEQ, "2", f"stream:{room}", f"seq:{room}"))
        except (StackError, ValueError):
            value = -1
        out[room] = value if value >= 0 else None
    return out


def cpu_seconds(stack: RunningStack) -> dict[str, float]:
    """CPU seconds each container has used so far, from its cgroup. Two readings over a window give the
    cores it used."""
    used = {name: container_cpu(c.id) for name, c in stack.containers.items()}
    return {name: seconds for name, seconds in used.items() if seconds is not None}
