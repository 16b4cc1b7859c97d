"""Scenarios as data: one TOML file per scenario in scenarios/, parsed into the model's frozen dataclasses.

Every value is validated here, where it is built; templates and the stack trust what they get. A scenario
is untrusted input: it is refused, with one line naming the file, the key and the value, when it is too big
or too deeply nested to parse safely, asks for more work than a run can do, sets a key the chosen app would
ignore, schedules two faults on one target at once, or declares an outcome that cannot mean anything
(expect.py).
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..settings import SCENARIOS_DIR
from .brokers import Broker, unfit
from .expect import (
    CLUSTER_ONLY,
    SEED_NODE_WS_METRICS,
    SOCKETIO_METRICS,
    SOCKETIO_ONLY,
    Metric,
    bound,
    show,
)
from .faults import NOT_ON_SWARM, FaultKind
from .model import (
    COOKIE_RE,
    DEFAULT_RECOVERY_S,
    MAX_DELIVERIES,
    MAX_FAULTS,
    MAX_MASTERS,
    MAX_RECONNECT_DELAY,
    MAX_RECONNECT_DELAY_MAX,
    MAX_RECOVERY_S,
    MAX_REPLICAS,
    MAX_ROOMS,
    MAX_SEND_DURATION_S,
    MAX_SENDS,
    MIN_MASTERS,
    MIN_RECONNECT_DELAY,
    NAME_RE,
    NODE_RE,
    ROOM_RE,
    AppKind,
    Balance,
    Bound,
    Events,
    Fault,
    Scenario,
    Swarm,
    Topology,
    Workload,
)
from .toml_input import parse_toml, read, shown


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: [{key}] must be a table, got {show(value)}")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key {show(extra[0])} (allowed: {', '.join(sorted(allowed))})")


def _int(table: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}: {key} must be an integer, got {show(value)}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} must be between {lo} and {hi}, got {show(value)}")
    return value


def _float(table: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {key} must be a number, got {show(value)}")
    if not lo <= value <= hi:  # also refuses nan
        raise ScenarioError(f"{where}: {key} must be between {lo:g} and {hi:g}, got {show(value)}")
    return float(value) + 0.0  # -0.0 reads as 0.0


def _enum(table: dict[str, Any], key: str, default: enum.Enum, where: str) -> Any:
    value = table.get(key, default.value)
    kind = type(default)
    try:
        return kind(value)
    except (ValueError, TypeError):
        names = ", ".join(m.value for m in kind)
        raise ScenarioError(f"{where}: unknown {key} {show(value)} (one of: {names})") from None


def _str(table: dict[str, Any], key: str, default: str, pattern: re.Pattern[str], where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ScenarioError(f"{where}: {key} must match {pattern.pattern}, got {show(value)}")
    return value


def _seconds(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _cluster_masters(top: dict[str, Any], where: str) -> int:
    value = top.get("cluster_masters", Topology.cluster_masters)
    if isinstance(value, int) and not isinstance(value, bool) and value < MIN_MASTERS:
        raise ScenarioError(f"{where}: cluster_masters = {value}: a Redis Cluster needs at least {MIN_MASTERS} "
                            f"masters (a failover needs a majority of them)")
    return _int(top, "cluster_masters", Topology.cluster_masters, MIN_MASTERS, MAX_MASTERS, where)


_SOCKETIO_APPS = (AppKind.SOCKETIO, AppKind.SEED_NODE_SOCKETIO)
#: workload and topology keys only some kinds of app use. The seed article's Socket.IO server speaks the
#: article's events only (workload.events is "article" for it, and not a choice).
APP_KEYS: dict[tuple[str, str], tuple[AppKind, ...]] = {
    ("topology", "cookie_name"): _SOCKETIO_APPS, ("workload", "transport"): _SOCKETIO_APPS,
    ("workload", "source_subnets"): _SOCKETIO_APPS, ("workload", "events"): (AppKind.SOCKETIO,),
    ("workload", "payload"): (AppKind.WEBSOCKET, AppKind.SEED_NODE_WS),
    ("workload", "rooms"): (AppKind.WEBSOCKET,),
}
#: the brokers each of the seed article's servers can run with, and what each means for it
NODE_BROKERS = {
    AppKind.SEED_NODE_WS: {Broker.SEED_GLOB: "the article's subscribe('chat:*')",
                           Broker.REDIS_PUBSUB: "the fix, pSubscribe('chat:*')"},
    AppKind.SEED_NODE_SOCKETIO: {Broker.NONE: "adapter off", Broker.REDIS_PUBSUB: "@socket.io/redis-adapter"},
}


def _ignored(tables: dict[str, dict[str, Any]], topology: Topology, where: str) -> None:
    """Refuse a key the chosen app, balance or broker would silently ignore."""
    for (table, key), apps in APP_KEYS.items():
        if key in tables[table] and topology.app not in apps:
            only = " or ".join(f'"{app.value}"' for app in apps)
            raise ScenarioError(f'{where}: {table}.{key} = {show(tables[table][key])} is ignored by app = '
                                f'"{topology.app.value}" (only app = {only} uses it)')
    top = tables["topology"]
    if "cookie_name" in top and topology.balance is not Balance.COOKIE:
        raise ScenarioError(f'{where}: topology.cookie_name = {show(top["cookie_name"])} is ignored with balance = '
                            f'"{topology.balance.value}" (only balance = "cookie" uses it)')
    if "maxlen" in top and topology.broker is not Broker.REDIS_STREAMS:
        raise ScenarioError(f'{where}: topology.maxlen = {show(top["maxlen"])} is ignored with broker = '
                            f'"{topology.broker.value}" (only broker = "redis-streams" uses it)')
    for key in ("cluster_masters", "cluster_replicas"):
        if key in top and not topology.broker.cluster:
            raise ScenarioError(f'{where}: topology.{key} = {show(top[key])} is ignored with broker = '
                                f'"{topology.broker.value}" (only the redis-cluster-* brokers use it)')


#: the workload keys that shape the reconnection backoff
BACKOFF_KEYS = ("reconnect_delay", "reconnect_delay_max", "randomization")


def _backoff(wl: dict[str, Any], reconnect: bool, where: str) -> dict[str, float]:
    """The backoff keys, checked: each only with reconnect = true, the maximum at least the first delay."""
    given = [key for key in BACKOFF_KEYS if key in wl]
    if given and not reconnect:
        raise ScenarioError(f"{where}: workload.{given[0]} = {show(wl[given[0]])} is ignored without "
                            "reconnect = true (clients that do not reconnect never back off)")
    initial = _float(wl, "reconnect_delay", Workload.reconnect_delay, MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY, where)
    maximum = _float(wl, "reconnect_delay_max", max(Workload.reconnect_delay_max, initial), MIN_RECONNECT_DELAY,
                     MAX_RECONNECT_DELAY_MAX, where)
    if maximum < initial:
        raise ScenarioError(f"{where}: reconnect_delay_max = {show(wl['reconnect_delay_max'])} is below "
                            f"reconnect_delay = {initial:g}: the maximum caps the delays, "
                            "give one at least as long as the first")
    return {"reconnect_delay": initial, "reconnect_delay_max": maximum,
            "randomization": _float(wl, "randomization", Workload.randomization, 0.0, 1.0, where)}


def _planned(workload: Workload, interval: str, where: str) -> None:
    """Refuse a workload whose planned work would run until the run is killed."""
    c, m = workload.clients, workload.messages
    given = f"clients = {c}, messages = {m}"
    if c * m > MAX_SENDS:
        raise ScenarioError(f"{where}: planned sends {c * m:,} (clients x messages) exceed {MAX_SENDS:,}: {given}")
    if workload.rooms > c:
        raise ScenarioError(f"{where}: rooms = {workload.rooms} is more than clients = {c}: a room would be empty")
    deliveries = m * sum(k * (k - 1) for k in workload.room_sizes())
    if deliveries > MAX_DELIVERIES:
        how = ("clients x messages x (clients-1)" if workload.rooms == 1
               else f"messages x members x (members-1) over {workload.rooms} rooms")
        raise ScenarioError(f"{where}: planned deliveries {deliveries:,} ({how}) exceed {MAX_DELIVERIES:,}: {given}")
    if workload.send_duration > MAX_SEND_DURATION_S:
        raise ScenarioError(f"{where}: sending duration {_seconds(workload.send_duration)}s (messages x "
                            f"send_interval) exceeds {MAX_SEND_DURATION_S:g}s: messages = {m}, {interval}")


def parse(text: str, *, name: str, path: Path | None = None) -> Scenario:
    """Parse and validate one scenario's TOML text; raise ScenarioError naming the file, key and value."""
    where = shown(str(path) if path else name)
    data = parse_toml(text, where)
    _unknown(data, {"description", "topology", "workload", "expect", "faults", "failure", "swarm"}, where)
    failure = data.get("failure", False)
    if not isinstance(failure, bool):
        raise ScenarioError(f"{where}: failure must be true or false, got {show(failure)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: description must be a string, got {show(description)}")
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
        cluster_masters=_cluster_masters(top, where),
        cluster_replicas=_int(top, "cluster_replicas", Topology.cluster_replicas, 0, 2, where),
    )
    if topology.app is AppKind.SOCKETIO and topology.broker not in {Broker.NONE, Broker.REDIS_PUBSUB}:
        raise ScenarioError(f"{where}: a socketio app takes broker none or redis-pubsub (AsyncRedisManager), "
                            f"not {topology.broker.value}")
    if topology.balance is Balance.ROOM and topology.app.socketio:
        raise ScenarioError(f'{where}: balance = "room" hashes the room named in the WebSocket URL; a Socket.IO '
                            f'client joins its room after connecting, so app = "{topology.app.value}" cannot use it')
    brokers = NODE_BROKERS.get(topology.app, {})
    if brokers and topology.broker not in brokers:
        takes = " or ".join(f"{b.value} ({what})" for b, what in brokers.items())
        raise ScenarioError(f'{where}: app = "{topology.app.value}" takes broker {takes}, not {topology.broker.value}')

    wl = raw_wl = _table(data, "workload", where)
    _unknown(wl, set(Workload.__dataclass_fields__) | {"rate"}, f"{where} [workload]")
    interval = f"send_interval = {show(wl.get('send_interval', Workload.send_interval))}"
    if "rate" in wl:
        if "send_interval" in wl:
            raise ScenarioError(f"{where}: give rate or send_interval, not both")
        rate = _float(wl, "rate", 1.0, 0.1, 1000.0, where)
        interval = f"rate = {show(wl['rate'])}"
        wl = {**wl, "send_interval": 1.0 / rate}
        del wl["rate"]
    reconnect = wl.get("reconnect", False)
    if not isinstance(reconnect, bool):
        raise ScenarioError(f"{where}: reconnect must be true or false, got {show(reconnect)}")
    workload = Workload(
        clients=_int(wl, "clients", Workload.clients, 2, 1000, where),
        messages=_int(wl, "messages", Workload.messages, 1, 10_000, where),
        room=_str(wl, "room", Workload.room, ROOM_RE, where),
        rooms=_int(wl, "rooms", Workload.rooms, 1, MAX_ROOMS, where),
        send_interval=_float(wl, "send_interval", Workload.send_interval, 0.0, 10.0, where),
        connect_timeout=_float(wl, "connect_timeout", Workload.connect_timeout, 0.1, 300.0, where),
        drain_quiet=_float(wl, "drain_quiet", Workload.drain_quiet, 0.05, 60.0, where),
        drain_timeout=_float(wl, "drain_timeout", Workload.drain_timeout, 0.1, 600.0, where),
        reconnect=reconnect,
        **_backoff(wl, reconnect, where),
        transport=_enum(wl, "transport", Workload.transport, where),
        source_subnets=_int(wl, "source_subnets", Workload.source_subnets, 1, 250, where),
        payload=_int(wl, "payload", Workload.payload, 0, 65536, where),
        events=(Events.ARTICLE if topology.app is AppKind.SEED_NODE_SOCKETIO
                else _enum(wl, "events", Workload.events, where)),
    )
    _ignored({"topology": top, "workload": raw_wl}, topology, where)
    _planned(workload, interval, where)
    swarm = _swarm(data["swarm"], where) if "swarm" in data else None
    if swarm is not None:
        _swarm_broker(topology.broker, where)
    faults = _faults(data.get("faults", []), topology, workload, where, swarm)

    exp = _table(data, "expect", where)
    if not exp:
        raise ScenarioError(f"{where}: [expect] is empty: declare at least one outcome")
    expect: dict[Metric, Bound] = {}
    for key, value in exp.items():
        try:
            metric = Metric(key)
        except ValueError:
            names = ", ".join(m.value for m in Metric)
            raise ScenarioError(f"{where}: unknown expectation {show(key)} (one of: {names})") from None
        if topology.app.socketio and metric not in SOCKETIO_METRICS:
            names = ", ".join(sorted(m.value for m in SOCKETIO_METRICS))
            raise ScenarioError(f"{where}: expect.{key} is not measured for a socketio app (these are: {names})")
        if metric in CLUSTER_ONLY and metric not in topology.broker.facts.measures:
            raise ScenarioError(f"{where}: expect.{key} is measured on a Redis Cluster only (a redis-cluster-* broker)")
        if topology.app is AppKind.WEBSOCKET and metric in SOCKETIO_ONLY:
            raise ScenarioError(f"{where}: expect.{key} is measured for app = \"socketio\" only")
        if topology.app is AppKind.SEED_NODE_WS and metric not in SEED_NODE_WS_METRICS:
            names = ", ".join(sorted(m.value for m in SEED_NODE_WS_METRICS))
            raise ScenarioError(f'{where}: expect.{key} is not measured for app = "seed-node-ws" (these are: {names})')
        expect[metric] = bound(metric, value, where)

    return Scenario(name=name, description=description, topology=topology, workload=workload,
                    expect=expect, faults=faults, path=path, failure=failure, swarm=swarm)


def _swarm(table: Any, where: str) -> Swarm:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: swarm must be a table ([swarm]), got {show(table)}")
    here = f"{where} [swarm]"
    _unknown(table, set(Swarm.__dataclass_fields__), here)
    nodes = _int(table, "nodes", Swarm.nodes, 1, 9, here)
    pins = {key: _str(table, key, getattr(Swarm, key), NODE_RE, here) for key in ("broker_node", "nginx_node")}
    for key, node in pins.items():
        if int(node.split("-")[1]) > nodes:
            raise ScenarioError(f"{here}: {key} = {show(node)} but the swarm has node-1..node-{nodes}")
    return Swarm(nodes=nodes, **pins)


def _swarm_fault(kind: FaultKind, where: str) -> None:
    if kind in NOT_ON_SWARM:
        raise ScenarioError(f"{where}: {kind.value} does not run on a Swarm ({NOT_ON_SWARM[kind]}); "
                            "partition-node or kill-node are the Swarm's own")


def _swarm_broker(broker: Broker, where: str) -> None:
    why = broker.facts.not_on_swarm
    if why is not None:
        raise ScenarioError(f"{where}: broker {broker.value} runs on one engine only ({why})")


def on_swarm(scenario: Scenario, nodes: int | None = None) -> Scenario:
    """The scenario as run with `--engine swarm`: its own [swarm] table, or the defaults."""
    if scenario.swarm is not None:
        return scenario
    where = shown(str(scenario.path) if scenario.path else scenario.name)
    _swarm_broker(scenario.topology.broker, where)
    for fault in scenario.faults:
        _swarm_fault(fault.kind, where)
    return Scenario(**{**scenario.__dict__, "swarm": Swarm(nodes=min(nodes or Swarm.nodes, Swarm.nodes))})


def _faults(items: Any, topology: Topology, workload: Workload, where: str,
            swarm: Swarm | None = None) -> tuple[Fault, ...]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where}: faults must be an array of tables ([[faults]]), got {show(items)}")
    if len(items) > MAX_FAULTS:
        raise ScenarioError(f"{where}: faults has {len(items):,} entries, more than {MAX_FAULTS}")
    faults: list[Fault] = []
    end = workload.send_duration
    for n, item in enumerate(items, 1):
        here = f"{where} fault {n}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{here}: must be a table, got {show(item)}")
        _unknown(item, {"kind", "target", "at", "heal_after", "recovery_s"}, here)
        if "kind" not in item or "at" not in item:
            raise ScenarioError(f"{here}: needs kind and at")
        kind = _enum(item, "kind", FaultKind.KILL_REPLICA, here)
        if swarm is not None:
            _swarm_fault(kind, here)
        target = item.get("target", topology.broker.container or "redis")
        why = unfit(kind, topology.broker)
        if why:
            raise ScenarioError(f"{here}: {why}, this topology has {topology.broker.value}")
        if kind.targets_node:
            if swarm is None:
                raise ScenarioError(f"{here}: {kind.value} needs a [swarm] table (nodes exist only on a Swarm)")
            if not (isinstance(target, str) and NODE_RE.fullmatch(target)) or int(target[5:]) > swarm.nodes:
                raise ScenarioError(f"{here}: {kind.value} needs target node-1..node-{swarm.nodes}, got {show(target)}")
            if target == "node-1":
                raise ScenarioError(f"{here}: {kind.value} on node-1, the Swarm's only manager: pick another node")
        elif kind.targets_cluster_node:
            _cluster_target(kind, target, topology, here)
        elif kind.targets_replica:
            names = [f"app-{i}" for i in range(1, topology.replicas + 1)]
            if target not in names:
                raise ScenarioError(f"{here}: {kind.value} needs target app-1..app-{topology.replicas}, "
                                    f"got {show(target)} (no such replica)")
        elif target != topology.broker.container:
            raise ScenarioError(f"{here}: {kind.value} targets {topology.broker.container}, got {show(target)} "
                                f"(the broker's container)")
        at = _float(item, "at", 0.0, 0.0, 3600.0, here)
        heal_after = _float(item, "heal_after", 0.0, 0.0, 3600.0, here)
        recovery_s = _float(item, "recovery_s", DEFAULT_RECOVERY_S, 0.0, MAX_RECOVERY_S, here)
        if at + heal_after >= end:
            raise ScenarioError(f"{here}: at {at:g}s + heal_after {heal_after:g}s is past the end of sending "
                                f"({end:g}s = messages x send_interval)")
        for m, other in enumerate(faults, 1):
            if other.target == target and at <= other.at + other.heal_after and other.at <= at + heal_after:
                raise ScenarioError(f"{here}: {kind.value} on {show(target)} at {at:g}s until {at + heal_after:g}s "
                                    f"overlaps fault {m} ({other.kind.value}, {other.at:g}s until "
                                    f"{other.at + other.heal_after:g}s): one fault at a time per target")
        faults.append(Fault(kind, target, at, heal_after, recovery_s))
    return tuple(faults)


def _cluster_target(kind: FaultKind, target: Any, topology: Topology, where: str) -> None:
    """A cluster fault needs a cluster broker and names one of its masters."""
    if not topology.broker.cluster:
        raise ScenarioError(f"{where}: {kind.value} needs a redis-cluster-* broker, not {topology.broker.value}")
    masters = [f"redis-{i}" for i in range(1, topology.cluster_masters + 1)]
    if target not in masters:
        raise ScenarioError(f"{where}: {kind.value} needs target redis-1..redis-{topology.cluster_masters} (a "
                            f"master), got {show(target)}")
    if topology.cluster_replicas == 0:
        raise ScenarioError(f"{where}: {kind.value} needs cluster_replicas >= 1 (no replica could be promoted)")


def load(name: str, *, directory: Path = SCENARIOS_DIR) -> Scenario:
    """Load scenarios/<name>.toml, or a scenario file given by its path (ending in .toml)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ScenarioError(f"scenario file {shown(name)} does not exist or is not a file")
        if not NAME_RE.fullmatch(path.stem):
            raise ScenarioError(f"bad scenario file name {path.name!r}: use lowercase letters, digits, dashes")
        return parse(read(path), name=path.stem, path=path)
    if not NAME_RE.fullmatch(name):
        raise ScenarioError(f"bad scenario name {show(name)}: use lowercase letters, digits and dashes")
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available(directory)) or "none"
        raise ScenarioError(f"unknown scenario {name!r} (known: {known})")
    return parse(read(path), name=name, path=path)


def available(directory: Path = SCENARIOS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))
