"""Scenarios as data: one TOML file per scenario in scenarios/, parsed into the model's frozen dataclasses.

Every value is validated here, where it is built; templates and the stack trust what they get. A scenario
is untrusted input: it is refused, with one line naming the file, the key and the value, when it is too big
or too deeply nested to parse safely, asks for more work than a run can do, sets a key the chosen app would
ignore, schedules two faults on one target at once, or declares an outcome that cannot mean anything
(expect.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..settings import SCENARIOS_DIR
from .brokers import Broker
from .expect import (
    CLUSTER_ONLY,
    SEED_NODE_WS_METRICS,
    SOCKETIO_METRICS,
    SOCKETIO_ONLY,
    Metric,
    bound,
    show,
)
from .fault_table import faults as parse_faults
from .fault_table import swarm_changes, swarm_fault
from .model import (
    COOKIE_RE,
    MAX_DELIVERIES,
    MAX_MASTERS,
    MAX_RECONNECT_DELAY,
    MAX_RECONNECT_DELAY_MAX,
    MAX_REPLICAS,
    MAX_ROOMS,
    MAX_SEND_DURATION_S,
    MAX_SENDS,
    MAX_SOFT_STOP_S,
    MIN_MASTERS,
    MIN_RECONNECT_DELAY,
    NAME_RE,
    NODE_RE,
    ROOM_RE,
    AppKind,
    Balance,
    Balancer,
    Bound,
    Events,
    Scenario,
    Swarm,
    Topology,
    Workload,
)
from .toml_input import parse_toml, read, shown
from .values import enum_of, float_of, int_of, refuse_unknown, seconds, str_of, subtable


def _cluster_masters(top: dict[str, Any], where: str) -> int:
    value = top.get("cluster_masters", Topology.cluster_masters)
    if isinstance(value, int) and not isinstance(value, bool) and value < MIN_MASTERS:
        raise ScenarioError(f"{where}: cluster_masters = {value}: a Redis Cluster needs at least {MIN_MASTERS} "
                            f"masters (a failover needs a majority of them)")
    return int_of(top, "cluster_masters", Topology.cluster_masters, MIN_MASTERS, MAX_MASTERS, where)


_SOCKETIO_APPS = (AppKind.SOCKETIO, AppKind.SEED_NODE_SOCKETIO)
#: workload and topology keys only some kinds of app use. The seed article's Socket.IO server speaks the
#: article's events only (workload.events is "article" for it, and not a choice).
APP_KEYS: dict[tuple[str, str], tuple[AppKind, ...]] = {
    ("topology", "cookie_name"): _SOCKETIO_APPS, ("workload", "transport"): _SOCKETIO_APPS,
    ("workload", "source_subnets"): (*_SOCKETIO_APPS, AppKind.WEBSOCKET), ("workload", "events"): (AppKind.SOCKETIO,),
    ("workload", "payload"): (AppKind.WEBSOCKET, AppKind.SEED_NODE_WS),
    ("workload", "rooms"): (AppKind.WEBSOCKET,),
}
#: the brokers each of the seed article's servers can run with, and what each means for it
NODE_BROKERS = {
    AppKind.SEED_NODE_WS: {Broker.SEED_GLOB: "the article's subscribe('chat:*')",
                           Broker.REDIS_PUBSUB: "the fix, pSubscribe('chat:*')"},
    AppKind.SEED_NODE_SOCKETIO: {Broker.NONE: "adapter off", Broker.REDIS_PUBSUB: "@socket.io/redis-adapter",
                                 Broker.REDIS_STREAMS: "@socket.io/redis-streams-adapter + connection state recovery"},
}
#: the servers that keep Socket.IO sessions for recovery (app, broker): they take max_disconnection_duration
RECOVERING = frozenset({(AppKind.SEED_NODE_SOCKETIO, Broker.REDIS_STREAMS), (AppKind.SOCKETIO, Broker.REDIS_STREAMS)})


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
    if "max_disconnection_duration" in top and (topology.app, topology.broker) not in RECOVERING:
        takers = " or ".join(f'app = "{a.value}" with broker = "{b.value}"' for a, b in sorted(
            RECOVERING, key=lambda ab: ab[0].value))
        raise ScenarioError(f'{where}: topology.max_disconnection_duration = '
                            f'{show(top["max_disconnection_duration"])} is ignored by app = "{topology.app.value}" '
                            f'with broker = "{topology.broker.value}" (only {takers} keeps sessions for recovery)')
    if ((topology.app, topology.broker) == (AppKind.SOCKETIO, Broker.REDIS_STREAMS)
            and topology.max_disconnection_duration < 1.0):
        raise ScenarioError(f'{where}: topology.max_disconnection_duration = '
                            f'{show(top["max_disconnection_duration"])}: the python-socketio replica renews a '
                            'session every second, so it keeps one at least 1 s; give 1 or more')
    for key in ("cluster_masters", "cluster_replicas"):
        if key in top and not topology.broker.cluster:
            raise ScenarioError(f'{where}: topology.{key} = {show(top[key])} is ignored with broker = '
                                f'"{topology.broker.value}" (only the redis-cluster-* brokers use it)')


def _soft_stop(top: dict[str, Any], balancer: Balancer, where: str) -> tuple[float | None, float | None]:
    """HAProxy's soft-stop knobs, in seconds: (hard_stop_after, close_spread_time), each None when not set.
    nginx has neither; a spread as long as the hard stop would be cut short by it (HAProxy's manual: set it
    lower)."""
    keys = ("hard_stop_after", "close_spread_time")
    given = [key for key in keys if key in top]
    if given and balancer is not Balancer.HAPROXY:
        raise ScenarioError(f'{where}: topology.{given[0]} = {show(top[given[0]])} is an HAProxy setting; '
                            f'this topology has balancer = "{balancer.value}" (use balancer = "haproxy")')
    hard, spread = (float_of(top, key, 0.0, 0.001, MAX_SOFT_STOP_S, where) if key in top else None for key in keys)
    if hard is not None and spread is not None and spread >= hard:
        raise ScenarioError(f"{where}: topology.close_spread_time = {show(top['close_spread_time'])} must be less "
                            f"than hard_stop_after = {show(top['hard_stop_after'])} (the hard stop would cut the "
                            "spread short)")
    return hard, spread


def _nginx_only(top: dict[str, Any], balancer: Balancer, where: str) -> None:
    if "max_fails" in top and balancer is not Balancer.NGINX:
        raise ScenarioError(f'{where}: topology.max_fails = {show(top["max_fails"])} is an nginx setting; this '
                            f'topology has balancer = "{balancer.value}"')


#: the workload keys that shape the reconnection backoff
BACKOFF_KEYS = ("reconnect_delay", "reconnect_delay_max", "randomization")


def _backoff(wl: dict[str, Any], reconnect: bool, where: str) -> dict[str, float]:
    """The backoff keys, checked: each only with reconnect = true, the maximum at least the first delay."""
    given = [key for key in BACKOFF_KEYS if key in wl]
    if given and not reconnect:
        raise ScenarioError(f"{where}: workload.{given[0]} = {show(wl[given[0]])} is ignored without "
                            "reconnect = true (clients that do not reconnect never back off)")
    initial = float_of(wl, "reconnect_delay", Workload.reconnect_delay, MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY, where)
    maximum = float_of(wl, "reconnect_delay_max", max(Workload.reconnect_delay_max, initial), MIN_RECONNECT_DELAY,
                     MAX_RECONNECT_DELAY_MAX, where)
    if maximum < initial:
        raise ScenarioError(f"{where}: reconnect_delay_max = {show(wl['reconnect_delay_max'])} is below "
                            f"reconnect_delay = {initial:g}: the maximum caps the delays, "
                            "give one at least as long as the first")
    return {"reconnect_delay": initial, "reconnect_delay_max": maximum,
            "randomization": float_of(wl, "randomization", Workload.randomization, 0.0, 1.0, where)}


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
        raise ScenarioError(f"{where}: sending duration {seconds(workload.send_duration)}s (messages x "
                            f"send_interval) exceeds {MAX_SEND_DURATION_S:g}s: messages = {m}, {interval}")


def parse(text: str, *, name: str, path: Path | None = None) -> Scenario:
    """Parse and validate one scenario's TOML text; raise ScenarioError naming the file, key and value."""
    where = shown(str(path) if path else name)
    data = parse_toml(text, where)
    refuse_unknown(data, {"description", "topology", "workload", "expect", "faults", "failure", "swarm"}, where)
    failure = data.get("failure", False)
    if not isinstance(failure, bool):
        raise ScenarioError(f"{where}: failure must be true or false, got {show(failure)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: description must be a string, got {show(description)}")
    for required in ("topology", "workload", "expect"):
        if required not in data:
            raise ScenarioError(f"{where}: missing table [{required}]")

    top = subtable(data, "topology", where)
    refuse_unknown(top, set(Topology.__dataclass_fields__), f"{where} [topology]")
    balancer = enum_of(top, "balancer", Topology.balancer, where)
    hard_stop_after, close_spread_time = _soft_stop(top, balancer, where)
    _nginx_only(top, balancer, where)
    topology = Topology(
        replicas=int_of(top, "replicas", Topology.replicas, 1, MAX_REPLICAS, where),
        broker=enum_of(top, "broker", Topology.broker, where),
        balance=enum_of(top, "balance", Topology.balance, where),
        app=enum_of(top, "app", Topology.app, where),
        maxlen=int_of(top, "maxlen", Topology.maxlen, 1, 10_000_000, where),
        cookie_name=str_of(top, "cookie_name", Topology.cookie_name, COOKIE_RE, where),
        cluster_masters=_cluster_masters(top, where),
        cluster_replicas=int_of(top, "cluster_replicas", Topology.cluster_replicas, 0, 2, where),
        balancer=balancer, hard_stop_after=hard_stop_after, close_spread_time=close_spread_time,
        max_fails=int_of(top, "max_fails", Topology.max_fails, 0, 1000, where),
        max_disconnection_duration=float_of(top, "max_disconnection_duration", Topology.max_disconnection_duration,
                                            0.001, 86_400.0, where),
    )
    if topology.app is AppKind.SOCKETIO and topology.broker not in {Broker.NONE, Broker.REDIS_PUBSUB,
                                                                   Broker.REDIS_STREAMS}:
        raise ScenarioError(f"{where}: a socketio app takes broker none, redis-pubsub (AsyncRedisManager) or "
                            f"redis-streams (connection state recovery), not {topology.broker.value}")
    if topology.balance is Balance.ROOM and topology.app.socketio:
        raise ScenarioError(f'{where}: balance = "room" hashes the room named in the WebSocket URL; a Socket.IO '
                            f'client joins its room after connecting, so app = "{topology.app.value}" cannot use it')
    brokers = NODE_BROKERS.get(topology.app, {})
    if brokers and topology.broker not in brokers:
        takes = " or ".join(f"{b.value} ({what})" for b, what in brokers.items())
        raise ScenarioError(f'{where}: app = "{topology.app.value}" takes broker {takes}, not {topology.broker.value}')

    wl = raw_wl = subtable(data, "workload", where)
    refuse_unknown(wl, set(Workload.__dataclass_fields__) | {"rate"}, f"{where} [workload]")
    interval = f"send_interval = {show(wl.get('send_interval', Workload.send_interval))}"
    if "rate" in wl:
        if "send_interval" in wl:
            raise ScenarioError(f"{where}: give rate or send_interval, not both")
        rate = float_of(wl, "rate", 1.0, 0.1, 1000.0, where)
        interval = f"rate = {show(wl['rate'])}"
        wl = {**wl, "send_interval": 1.0 / rate}
        del wl["rate"]
    reconnect = wl.get("reconnect", False)
    if not isinstance(reconnect, bool):
        raise ScenarioError(f"{where}: reconnect must be true or false, got {show(reconnect)}")
    workload = Workload(
        clients=int_of(wl, "clients", Workload.clients, 2, 1000, where),
        messages=int_of(wl, "messages", Workload.messages, 1, 10_000, where),
        room=str_of(wl, "room", Workload.room, ROOM_RE, where),
        rooms=int_of(wl, "rooms", Workload.rooms, 1, MAX_ROOMS, where),
        send_interval=float_of(wl, "send_interval", Workload.send_interval, 0.0, 10.0, where),
        connect_timeout=float_of(wl, "connect_timeout", Workload.connect_timeout, 0.1, 300.0, where),
        drain_quiet=float_of(wl, "drain_quiet", Workload.drain_quiet, 0.05, 60.0, where),
        drain_timeout=float_of(wl, "drain_timeout", Workload.drain_timeout, 0.1, 600.0, where),
        reconnect=reconnect,
        **_backoff(wl, reconnect, where),
        transport=enum_of(wl, "transport", Workload.transport, where),
        source_subnets=int_of(wl, "source_subnets", Workload.source_subnets, 1, 250, where),
        payload=int_of(wl, "payload", Workload.payload, 0, 65536, where),
        events=(Events.ARTICLE if topology.app is AppKind.SEED_NODE_SOCKETIO
                else enum_of(wl, "events", Workload.events, where)),
    )
    _ignored({"topology": top, "workload": raw_wl}, topology, where)
    _planned(workload, interval, where)
    swarm = _swarm(data["swarm"], where) if "swarm" in data else None
    if swarm is not None:
        _swarm_broker(topology.broker, where)
        _swarm_balancer(topology.balancer, where)
    faults = parse_faults(data.get("faults", []), topology, workload, where, swarm)

    exp = subtable(data, "expect", where)
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
    refuse_unknown(table, set(Swarm.__dataclass_fields__), here)
    nodes = int_of(table, "nodes", Swarm.nodes, 1, 9, here)
    pins = {key: str_of(table, key, getattr(Swarm, key), NODE_RE, here) for key in ("broker_node", "nginx_node")}
    for key, node in pins.items():
        if int(node.split("-")[1]) > nodes:
            raise ScenarioError(f"{here}: {key} = {show(node)} but the swarm has node-1..node-{nodes}")
    return Swarm(nodes=nodes, **pins)


def _swarm_broker(broker: Broker, where: str) -> None:
    why = broker.facts.not_on_swarm
    if why is not None:
        raise ScenarioError(f"{where}: broker {broker.value} runs on one engine only ({why})")


def _swarm_balancer(balancer: Balancer, where: str) -> None:
    if balancer is not Balancer.NGINX:
        raise ScenarioError(f'{where}: balancer = "{balancer.value}" runs on one engine only (the Swarm engine '
                            'runs nginx as a service): leave out [swarm] and --engine swarm, or use balancer = "nginx"')


def on_swarm(scenario: Scenario, nodes: int | None = None) -> Scenario:
    """The scenario as run with `--engine swarm`: its own [swarm] table, or the defaults."""
    if scenario.swarm is not None:
        return scenario
    where = shown(str(scenario.path) if scenario.path else scenario.name)
    _swarm_broker(scenario.topology.broker, where)
    _swarm_balancer(scenario.topology.balancer, where)
    for fault in scenario.faults:
        swarm_fault(fault.kind, where)
    swarm_changes(scenario.faults, where)
    return Scenario(**{**scenario.__dict__, "swarm": Swarm(nodes=min(nodes or Swarm.nodes, Swarm.nodes))})


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
