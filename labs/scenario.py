"""Scenarios as data: one TOML file per scenario in scenarios/, parsed into frozen dataclasses.

Every value is validated here, where it is built; templates and the stack trust what they get.
"""

from __future__ import annotations

import enum
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ScenarioError
from .settings import SCENARIOS_DIR

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
COOKIE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MAX_REPLICAS = 32


class Broker(enum.Enum):
    NONE = "none"
    REDIS_PUBSUB = "redis-pubsub"
    #: the seed article's code: SUBSCRIBE to the literal channel "chat:*", publish to "chat:<room>"
    SEED_GLOB = "seed-subscribe-glob"
    REDIS_STREAMS = "redis-streams"

    @property
    def needs_redis(self) -> bool:
        return self is not Broker.NONE


class Balance(enum.Enum):
    ROUND_ROBIN = "round-robin"
    IP_HASH = "ip-hash"
    HASH = "hash"
    COOKIE = "cookie"


class AppKind(enum.Enum):
    """What the replicas run: the plain `websockets` server, or a python-socketio server."""

    WEBSOCKET = "websocket"
    SOCKETIO = "socketio"


class Transport(enum.Enum):
    """How Socket.IO clients connect: long-polling only, WebSocket only, or polling then upgrade."""

    WEBSOCKET = "websocket"
    POLLING = "polling"
    DEFAULT = "default"


class FaultKind(enum.Enum):
    KILL_REPLICA = "kill-replica"
    RESTART_REDIS = "restart-redis"
    PAUSE_REDIS = "pause-redis"
    PARTITION_REPLICA = "partition-replica"
    KILL_PUBSUB_CLIENTS = "kill-pubsub-clients"
    SLOW_CONSUMER = "slow-consumer"

    @property
    def targets_replica(self) -> bool:
        return self in {FaultKind.KILL_REPLICA, FaultKind.PARTITION_REPLICA, FaultKind.SLOW_CONSUMER}


class Metric(enum.Enum):
    """What an expectation can speak about; each is computed by the checker."""

    DELIVERED_RATIO = "delivered_ratio"
    SAME_SERVER_RATIO = "same_server_ratio"
    CROSS_SERVER_RATIO = "cross_server_ratio"
    LOST = "lost"
    DUPLICATED = "duplicated"
    UNEXPECTED = "unexpected"
    RECOVERED = "recovered"
    LOST_IN_FAULT = "lost_in_fault"
    LOST_OUTSIDE_FAULT = "lost_outside_fault"
    TRIMMED = "trimmed"
    #: lost minus trimmed: loss that trimming does not explain
    UNTRIMMED_LOST = "untrimmed_lost"
    MAX_GAP_S = "max_gap_s"
    RECONNECTS = "reconnects"
    DEAF_REPLICAS = "deaf_replicas"
    PUBLISHED_TO_NOBODY = "published_to_nobody"
    NACKED = "nacked"
    #: lost + duplicated + nacked: every message whose delivery the fault disturbed in a way a user sees
    DISTURBED = "disturbed"
    # measured by Socket.IO runs (labs/sio_checker.py)
    HANDSHAKE_OK_RATIO = "handshake_ok_ratio"
    SESSION_UNKNOWN = "session_unknown_400"
    POLLERS_WITH_400_RATIO = "pollers_with_400_ratio"
    HTTP_ERRORS = "http_errors"
    REPLICAS_USED = "replicas_used"
    PLACEMENT_MAX_MIN = "placement_max_min"
    UNACKED = "unacked"
    DROPPED_ON_KILLED_RATIO = "dropped_on_killed_ratio"
    DROPPED_ELSEWHERE = "dropped_elsewhere"
    RECONNECTED_RATIO = "reconnected_ratio"
    RECONNECT_MAX_S = "reconnect_max_s"
    LOST_UNDISTURBED = "lost_undisturbed"


#: metrics only a Socket.IO run measures, and everything a Socket.IO run can be judged on
SOCKETIO_ONLY = frozenset({
    Metric.HANDSHAKE_OK_RATIO, Metric.SESSION_UNKNOWN, Metric.POLLERS_WITH_400_RATIO, Metric.HTTP_ERRORS,
    Metric.REPLICAS_USED, Metric.PLACEMENT_MAX_MIN, Metric.UNACKED, Metric.DROPPED_ON_KILLED_RATIO,
    Metric.DROPPED_ELSEWHERE, Metric.RECONNECTED_RATIO, Metric.RECONNECT_MAX_S, Metric.LOST_UNDISTURBED,
})
SOCKETIO_METRICS = SOCKETIO_ONLY | {Metric.DELIVERED_RATIO, Metric.SAME_SERVER_RATIO, Metric.CROSS_SERVER_RATIO,
                                    Metric.LOST, Metric.DUPLICATED, Metric.UNEXPECTED}


@dataclass(frozen=True)
class Bound:
    """A closed interval a metric must fall in; `min == max` is an exact value."""

    min: float = -math.inf
    max: float = math.inf

    def holds(self, value: float) -> bool:
        return self.min <= value <= self.max

    def __str__(self) -> str:
        if self.min == self.max:
            return f"= {self.min:g}"
        if self.max == math.inf:
            return f">= {self.min:g}"
        if self.min == -math.inf:
            return f"<= {self.max:g}"
        return f"in [{self.min:g}, {self.max:g}]"


@dataclass(frozen=True)
class Topology:
    replicas: int = 3
    broker: Broker = Broker.NONE
    balance: Balance = Balance.ROUND_ROBIN
    app: AppKind = AppKind.WEBSOCKET
    #: approximate MAXLEN of each room's stream (redis-streams)
    maxlen: int = 100_000
    cookie_name: str = "wslab_srv"


@dataclass(frozen=True)
class Workload:
    clients: int = 12
    messages: int = 20
    room: str = "lobby"
    send_interval: float = 0.005
    connect_timeout: float = 10.0
    drain_quiet: float = 1.0
    drain_timeout: float = 15.0
    #: clients reconnect (with backoff) when their connection drops, and resume where they were
    reconnect: bool = False
    transport: Transport = Transport.WEBSOCKET
    #: how many distinct /24 source networks clients appear to come from (via a trusted X-Forwarded-For)
    source_subnets: int = 1
    #: bytes of text carried by each message, besides its id and timestamps
    payload: int = 0

    @property
    def send_duration(self) -> float:
        return self.messages * self.send_interval


@dataclass(frozen=True)
class Fault:
    """`kind` hits `target` at `at` seconds after sending starts, and is healed `heal_after` seconds later."""

    kind: FaultKind
    target: str
    at: float
    heal_after: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    topology: Topology
    workload: Workload
    expect: dict[Metric, Bound] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    path: Path | None = None
    #: the scenario demonstrates a failure: its verdict reads "fails as expected" when the outcome is met
    failure: bool = False


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _int(table: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}: {key} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} must be between {lo} and {hi}, got {value}")
    return value


def _float(table: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {key} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} must be between {lo:g} and {hi:g}, got {value:g}")
    return float(value)


def _enum(table: dict[str, Any], key: str, default: enum.Enum, where: str) -> Any:
    value = table.get(key, default.value)
    kind = type(default)
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise ScenarioError(f"{where}: unknown {key} {value!r} (one of: {names})") from None


def _str(table: dict[str, Any], key: str, default: str, pattern: re.Pattern[str], where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ScenarioError(f"{where}: {key} must match {pattern.pattern}, got {value!r}")
    return value


def _bound(value: Any, key: str, where: str) -> Bound:
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expect.{key} must be a number or {{min, max}}, got {value!r}")
    if isinstance(value, (int, float)):
        return Bound(float(value), float(value))
    if isinstance(value, dict) and value and set(value) <= {"min", "max"}:
        nums = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if len(nums) != len(value):
            raise ScenarioError(f"{where}: expect.{key} bounds must be numbers, got {value!r}")
        bound = Bound(float(nums.get("min", -math.inf)), float(nums.get("max", math.inf)))
        if bound.min > bound.max:
            raise ScenarioError(f"{where}: expect.{key} has min > max: {value!r}")
        return bound
    raise ScenarioError(f"{where}: expect.{key} must be a number or {{min = .., max = ..}}, got {value!r}")


def parse(text: str, *, name: str, path: Path | None = None) -> Scenario:
    """Parse and validate one scenario's TOML text; raise ScenarioError naming the file and key."""
    where = str(path) if path else name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from None
    _unknown(data, {"description", "topology", "workload", "expect", "faults", "failure"}, where)
    failure = data.get("failure", False)
    if not isinstance(failure, bool):
        raise ScenarioError(f"{where}: failure must be true or false, got {failure!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: description must be a string")
    for required in ("topology", "workload", "expect"):
        if required not in data:
            raise ScenarioError(f"{where}: missing table [{required}]")

    top = _table(data, "topology", where)
    _unknown(top, set(Topology.__dataclass_fields__), f"{where} [topology]")
    topology = Topology(
        replicas=_int(top, "replicas", Topology.replicas, 1, MAX_REPLICAS, where),
        broker=_enum(top, "broker", Topology.broker, where),
        balance=_enum(top, "balance", Topology.balance, where),
        app=_enum(top, "app", Topology.app, where),
        maxlen=_int(top, "maxlen", Topology.maxlen, 1, 10_000_000, where),
        cookie_name=_str(top, "cookie_name", Topology.cookie_name, COOKIE_RE, where),
    )
    if topology.app is AppKind.SOCKETIO and topology.broker not in {Broker.NONE, Broker.REDIS_PUBSUB}:
        raise ScenarioError(f"{where}: a socketio app takes broker none or redis-pubsub (AsyncRedisManager), "
                            f"not {topology.broker.value}")

    wl = _table(data, "workload", where)
    _unknown(wl, set(Workload.__dataclass_fields__) | {"rate"}, f"{where} [workload]")
    if "rate" in wl:
        if "send_interval" in wl:
            raise ScenarioError(f"{where}: give rate or send_interval, not both")
        rate = _float(wl, "rate", 1.0, 0.01, 1000.0, where)
        wl = {**wl, "send_interval": 1.0 / rate}
        del wl["rate"]
    reconnect = wl.get("reconnect", False)
    if not isinstance(reconnect, bool):
        raise ScenarioError(f"{where}: reconnect must be true or false, got {reconnect!r}")
    workload = Workload(
        clients=_int(wl, "clients", Workload.clients, 2, 1000, where),
        messages=_int(wl, "messages", Workload.messages, 1, 10_000, where),
        room=_str(wl, "room", Workload.room, ROOM_RE, where),
        send_interval=_float(wl, "send_interval", Workload.send_interval, 0.0, 10.0, where),
        connect_timeout=_float(wl, "connect_timeout", Workload.connect_timeout, 0.1, 300.0, where),
        drain_quiet=_float(wl, "drain_quiet", Workload.drain_quiet, 0.05, 60.0, where),
        drain_timeout=_float(wl, "drain_timeout", Workload.drain_timeout, 0.1, 600.0, where),
        reconnect=reconnect,
        transport=_enum(wl, "transport", Workload.transport, where),
        source_subnets=_int(wl, "source_subnets", Workload.source_subnets, 1, 250, where),
        payload=_int(wl, "payload", Workload.payload, 0, 65536, where),
    )
    faults = _faults(data.get("faults", []), topology, workload, where)

    exp = _table(data, "expect", where)
    if not exp:
        raise ScenarioError(f"{where}: [expect] is empty: declare at least one outcome")
    expect: dict[Metric, Bound] = {}
    for key, value in exp.items():
        try:
            metric = Metric(key)
        except ValueError:
            names = ", ".join(m.value for m in Metric)
            raise ScenarioError(f"{where}: unknown expectation {key!r} (one of: {names})") from None
        if topology.app is AppKind.SOCKETIO and metric not in SOCKETIO_METRICS:
            names = ", ".join(sorted(m.value for m in SOCKETIO_METRICS))
            raise ScenarioError(f"{where}: expect.{key} is not measured for a socketio app (these are: {names})")
        if topology.app is AppKind.WEBSOCKET and metric in SOCKETIO_ONLY:
            raise ScenarioError(f"{where}: expect.{key} is measured for app = \"socketio\" only")
        expect[metric] = _bound(value, key, where)

    return Scenario(name=name, description=description, topology=topology, workload=workload,
                    expect=expect, faults=faults, path=path, failure=failure)


def _faults(items: Any, topology: Topology, workload: Workload, where: str) -> tuple[Fault, ...]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where}: faults must be an array of tables ([[faults]])")
    faults = []
    end = workload.send_duration
    for n, item in enumerate(items, 1):
        here = f"{where} fault {n}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{here}: must be a table")
        _unknown(item, {"kind", "target", "at", "heal_after"}, here)
        if "kind" not in item or "at" not in item:
            raise ScenarioError(f"{here}: needs kind and at")
        kind = _enum(item, "kind", FaultKind.KILL_REPLICA, here)
        target = item.get("target", "redis")
        if kind.targets_replica:
            names = [f"app-{i}" for i in range(1, topology.replicas + 1)]
            if target not in names:
                raise ScenarioError(f"{here}: {kind.value} needs target app-1..app-{topology.replicas}, "
                                    f"got {target!r} (no such replica)")
            if kind is FaultKind.SLOW_CONSUMER and topology.broker is not Broker.REDIS_PUBSUB:
                raise ScenarioError(f"{here}: slow-consumer needs broker redis-pubsub")
        else:
            if target != "redis":
                raise ScenarioError(f"{here}: {kind.value} targets redis, got {target!r}")
            if not topology.broker.needs_redis:
                raise ScenarioError(f"{here}: {kind.value} needs a Redis broker, this topology has none")
        at = _float(item, "at", 0.0, 0.0, 3600.0, here)
        heal_after = _float(item, "heal_after", 0.0, 0.0, 3600.0, here)
        if at + heal_after >= end:
            raise ScenarioError(f"{here}: at {at:g}s + heal_after {heal_after:g}s is past the end of sending "
                                f"({end:g}s = messages x send_interval)")
        faults.append(Fault(kind, target, at, heal_after))
    return tuple(faults)


def load(name: str, *, directory: Path = SCENARIOS_DIR) -> Scenario:
    """Load scenarios/<name>.toml, or a scenario file given by its path (ending in .toml)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ScenarioError(f"scenario file {name} does not exist")
        if not NAME_RE.match(path.stem):
            raise ScenarioError(f"bad scenario file name {path.name!r}: use lowercase letters, digits, dashes")
        return parse(path.read_text(encoding="utf-8"), name=path.stem, path=path)
    if not NAME_RE.match(name):
        raise ScenarioError(f"bad scenario name {name!r}: use lowercase letters, digits and dashes")
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available(directory)) or "none"
        raise ScenarioError(f"unknown scenario {name!r} (known: {known})")
    return parse(path.read_text(encoding="utf-8"), name=name, path=path)


def available(directory: Path = SCENARIOS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))
