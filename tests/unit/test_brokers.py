"""What the harness knows about each broker, from its registry entry: the containers' options a shipped
scenario gets, which faults each broker takes (and the reason it gives for one it does not), where it may
run, what it is asked after a run, what it meters, its extra measures and its names."""

from __future__ import annotations

from typing import Any

import pytest

from labs import runner
from labs.accounting.history import History
from labs.brokers import REGISTRY, ClusterMeter, entry
from labs.errors import ScenarioError
from labs.infra.images import Image, ImageSet
from labs.infra.redis_cluster import Former, cluster_backends
from labs.infra.stack import Backend
from labs.scenario import Broker, FaultKind, available, load, on_swarm, parse, unfit
from labs.spec import broker_options, image_sources, plan

IMAGES = ImageSet(app=Image("app", "t"), redis=Image("redis-img", "t"), nginx=Image("nginx", "t"),
                  nats=Image("nats-img", "t"))
STREAMS_ARGS = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
NATS_URL = "nats://nats:4222"
NATS_CORE = "printf '' > /tmp/nats.conf && exec nats-server -c /tmp/nats.conf -a 0.0.0.0 -p 4222"
NATS_SLOW = ("printf 'write_deadline: \"1s\"\\n' > /tmp/nats.conf && exec nats-server -c /tmp/nats.conf "
             "-a 0.0.0.0 -p 4222")
JETSTREAM = " -js --store_dir /tmp/js"
THREE_MASTERS = "redis://redis-1:6379/0,redis://redis-2:6379/0,redis://redis-3:6379/0"


def nats(script: str) -> tuple[Backend, ...]:
    return (Backend("nats", "nats-img", ("sh", "-c", script), b"Server is ready"),)


def options(name: str) -> dict[str, Any]:
    s = load(name)
    return broker_options(s, IMAGES)


#: a shipped scenario of each broker (and each slow consumer), and the options its containers get
SHIPPED = {
    "no-broker": {"small_buffers": ()},
    "pubsub": {"small_buffers": ()},
    "seed-glob": {"small_buffers": ()},
    "fault-pubsub-slow-consumer": {"small_buffers": ("app-2", "redis")},
    "streams": {"small_buffers": (), "redis_args": STREAMS_ARGS},
    "fault-streams-trimmed": {"small_buffers": (), "redis_args": STREAMS_ARGS},
    "nats": {"small_buffers": (), "backends": nats(NATS_CORE), "broker_url": NATS_URL},
    "fault-nats-slow-consumer": {"small_buffers": ("app-2", "nats"), "backends": nats(NATS_SLOW),
                                 "broker_url": NATS_URL},
    "nats-jetstream": {"small_buffers": (), "backends": nats(NATS_CORE + JETSTREAM), "broker_url": NATS_URL},
    "fault-jetstream-slow-consumer": {"small_buffers": ("app-2", "nats"), "backends": nats(NATS_SLOW + JETSTREAM),
                                      "broker_url": NATS_URL},
    "cluster-pubsub": {"small_buffers": (), "backends": cluster_backends("redis-img", 3, 0),
                       "broker_url": THREE_MASTERS, "form": Former(3, 0)},
    "cluster-sharded": {"small_buffers": (), "backends": cluster_backends("redis-img", 3, 0),
                        "broker_url": THREE_MASTERS, "form": Former(3, 0)},
    "cluster-sharded-kill-master": {"small_buffers": (), "backends": cluster_backends("redis-img", 3, 1),
                                    "broker_url": THREE_MASTERS, "form": Former(3, 1)},
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_scenario_gets_its_brokers_container_options(name):
    assert options(name) == SHIPPED[name]


def test_every_shipped_scenario_gets_the_options_of_its_broker():
    """Besides the slow consumer's small buffers and a cluster's shape, a broker's options never depend on
    the scenario: each shipped scenario gets those of the sample above with the same broker."""
    sample = {load(name).topology.broker: name for name in SHIPPED if "slow" not in name and "kill" not in name}
    assert set(sample) == set(Broker)
    for name in available():
        s = load(name)
        got = options(name)
        slow = tuple(f.target for f in s.faults if f.kind is FaultKind.SLOW_CONSUMER)
        assert got.pop("small_buffers") == (slow + (s.topology.broker.container or "redis",) if slow else ()), name
        if slow or s.topology.cluster_replicas:
            continue
        assert got == {k: v for k, v in SHIPPED[sample[s.topology.broker]].items() if k != "small_buffers"}, name


ONE_CONTAINER = 'needs one broker container; a cluster\'s node is killed with kind = "kill-cluster-master"'
SLOW = "slow-consumer needs broker redis-pubsub or nats or nats-jetstream"
CLUSTER_MASTER = "kill-cluster-master needs a redis-cluster-* broker"
#: every fault a broker does not take, and why; any other (broker, fault) pair fits
REFUSED: dict[Broker, dict[FaultKind, str]] = {
    Broker.NONE: {
        FaultKind.RESTART_REDIS: "restart-redis needs a Redis broker",
        FaultKind.PAUSE_REDIS: "pause-redis needs a Redis broker",
        FaultKind.KILL_PUBSUB_CLIENTS: "kill-pubsub-clients needs a Redis broker",
        FaultKind.SLOW_CONSUMER: SLOW,
        FaultKind.RESTART_BROKER: "restart-broker needs a broker",
        FaultKind.PAUSE_BROKER: "pause-broker needs a broker",
        FaultKind.KILL_CLUSTER_MASTER: CLUSTER_MASTER,
    },
    Broker.REDIS_PUBSUB: {FaultKind.KILL_CLUSTER_MASTER: CLUSTER_MASTER},
    Broker.SEED_GLOB: {FaultKind.SLOW_CONSUMER: SLOW, FaultKind.KILL_CLUSTER_MASTER: CLUSTER_MASTER},
    Broker.REDIS_STREAMS: {FaultKind.SLOW_CONSUMER: SLOW, FaultKind.KILL_CLUSTER_MASTER: CLUSTER_MASTER},
    **{broker: {
        FaultKind.RESTART_REDIS: "restart-redis needs a Redis broker (use restart-broker)",
        FaultKind.PAUSE_REDIS: "pause-redis needs a Redis broker (use pause-broker)",
        FaultKind.KILL_PUBSUB_CLIENTS: "kill-pubsub-clients needs a Redis broker",
        FaultKind.KILL_CLUSTER_MASTER: CLUSTER_MASTER,
    } for broker in (Broker.NATS, Broker.NATS_JETSTREAM)},
    **{broker: {
        FaultKind.RESTART_REDIS: f"restart-redis {ONE_CONTAINER}",
        FaultKind.PAUSE_REDIS: f"pause-redis {ONE_CONTAINER}",
        FaultKind.KILL_PUBSUB_CLIENTS: f"kill-pubsub-clients {ONE_CONTAINER}",
        FaultKind.SLOW_CONSUMER: SLOW,
        FaultKind.RESTART_BROKER: f"restart-broker {ONE_CONTAINER}",
        FaultKind.PAUSE_BROKER: f"pause-broker {ONE_CONTAINER}",
    } for broker in (Broker.REDIS_CLUSTER_PUBSUB, Broker.REDIS_CLUSTER_SHARDED)},
}


@pytest.mark.parametrize("broker", list(Broker), ids=lambda b: b.value)
def test_a_broker_refuses_the_faults_it_cannot_take_and_says_why(broker):
    assert {kind: unfit(kind, broker) for kind in FaultKind} == {
        kind: REFUSED[broker].get(kind) for kind in FaultKind}


@pytest.mark.parametrize(("broker", "container"), [
    (Broker.NONE, None), (Broker.REDIS_PUBSUB, "redis"), (Broker.SEED_GLOB, "redis"),
    (Broker.REDIS_STREAMS, "redis"), (Broker.NATS, "nats"), (Broker.NATS_JETSTREAM, "nats"),
    (Broker.REDIS_CLUSTER_PUBSUB, None), (Broker.REDIS_CLUSTER_SHARDED, None)])
def test_a_broker_fault_targets_the_brokers_one_container(broker, container):
    assert broker.container == container
    assert broker.cluster is broker.value.startswith("redis-cluster-")


CLUSTER_ON_SWARM = """
[topology]
broker = "redis-cluster-sharded"
[workload]
clients = 4
messages = 10
[expect]
lost = 0
"""


def test_a_redis_cluster_does_not_run_on_a_swarm():
    why = ("runs on one engine only (its nodes meet on a bus network of their own, which the Swarm engine "
           "does not build)")
    with pytest.raises(ScenarioError, match=f"broker redis-cluster-sharded {why}".replace("(", r"\(")
                       .replace(")", r"\)")):
        parse(CLUSTER_ON_SWARM + "[swarm]\n", name="x")
    with pytest.raises(ScenarioError, match="broker redis-cluster-pubsub runs on one engine only"):
        on_swarm(load("cluster-pubsub"))
    for name in ("pubsub", "streams", "nats", "nats-jetstream", "no-broker", "seed-glob"):
        assert on_swarm(load(name)).swarm is not None


def test_the_replicas_know_every_broker_the_harness_names():
    """The replica package stands alone (it imports nothing from the harness), so its own table of brokers
    must name the same brokers as the harness's."""
    from labs.app.__main__ import BROKERS

    assert sorted(BROKERS) == sorted(b.value for b in Broker)


# -- the registry ------------------------------------------------------------------------------------------

def test_every_broker_has_one_registry_entry():
    assert list(REGISTRY) == list(Broker)
    assert all(entry(b).broker is b and entry(b).facts is b.facts for b in Broker)


#: label, container, server, durable, replays, slow consumer, on a Swarm, extra measures
FACTS = {
    Broker.NONE: ("no broker", None, None, False, False, False, True, set()),
    Broker.REDIS_PUBSUB: ("PubSub", "redis", "Redis", False, False, True, True, set()),
    Broker.SEED_GLOB: ("seed glob", "redis", "Redis", False, False, False, True, set()),
    Broker.REDIS_STREAMS: ("Streams", "redis", "Redis", True, True, False, True, set()),
    Broker.NATS: ("NATS", "nats", "nats-server", False, False, True, True, set()),
    Broker.NATS_JETSTREAM: ("JetStream", "nats", "nats-server", True, True, True, True, set()),
    Broker.REDIS_CLUSTER_PUBSUB: ("Cluster PUBLISH", None, None, False, False, False, False,
                                  {"bus_bytes_per_message", "resubscribe_max_s"}),
    Broker.REDIS_CLUSTER_SHARDED: ("Cluster sharded", None, None, False, False, False, False,
                                   {"bus_bytes_per_message", "resubscribe_max_s"}),
}


@pytest.mark.parametrize("broker", list(Broker), ids=lambda b: b.value)
def test_a_brokers_names_and_capabilities(broker):
    f = broker.facts
    assert (f.label, f.container, f.server, f.durable, f.replays, f.slow_consumer, f.on_swarm,
            {m.value for m in f.measures}) == FACTS[broker]


@pytest.mark.parametrize("broker", list(Broker), ids=lambda b: b.value)
def test_a_brokers_runs_measure_exactly_its_extra_measures(broker):
    assert set(entry(broker).measures(History())) == broker.facts.measures


class Container:
    """A container that answers `redis-cli` as a Redis with one subscriber per replica would."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def exec_run(self, command: list[str]) -> tuple[int, bytes]:
        self.calls.append(command)
        if command[1:3] == ["CLIENT", "LIST"]:
            return 0, b"id=3 name=app-1 sub=1\nid=4 name=app-2 sub=0\n"
        return 0, b"7"


class FakeStack:
    def __init__(self, *names: str) -> None:
        self.containers = {name: Container() for name in names}


REPLICAS = {"app-1": {"status": 200, "rooms": {"lobby": 2}, "published_to_nobody": 1},
            "app-2": {"status": None, "error": "gone"}}


@pytest.mark.parametrize(("name", "asked"), [
    ("no-broker", {}), ("seed-glob", {}), ("nats", {}), ("nats-jetstream", {}), ("cluster-sharded", {}),
    ("pubsub", {"members": {"app-1": 1, "app-2": None}, "subscriptions": {"app-1": 1, "app-2": 0}}),
    ("streams", {"stream_first_seq": {"lobby": 7}}),
])
def test_after_a_run_the_harness_asks_each_broker_what_its_entry_says(name, asked):
    s = load(name)
    out = runner.probes(FakeStack("redis", "nats", "redis-1"), s, REPLICAS)  # type: ignore[arg-type]
    assert out == {"published_to_nobody": None, "deaf_detected": None, "unhandled_rejections": None, **asked}


def test_a_broker_asked_without_its_container_says_nothing():
    for name in ("pubsub", "streams"):
        assert set(runner.probes(FakeStack(), load(name), REPLICAS)) == {  # type: ignore[arg-type]
            "published_to_nobody", "deaf_detected", "unhandled_rejections"}


@pytest.mark.parametrize("broker", list(Broker), ids=lambda b: b.value)
def test_only_a_redis_cluster_is_metered_over_the_run(broker):
    s = load("cluster-sharded-kill-master" if broker.cluster else "pubsub")
    meter = entry(broker).meter(FakeStack(), s)  # type: ignore[arg-type]
    assert isinstance(meter, ClusterMeter) is broker.cluster
    if broker.cluster:
        assert isinstance(meter, ClusterMeter) and meter.meter.names == [f"redis-{i}" for i in range(1, 7)]
        assert meter.end() == {"cluster": {}}  # never begun: nothing read
    else:
        meter.begin()
        assert meter.end() == {}


@pytest.mark.parametrize(("name", "metrics"), [
    ("pubsub", set()), ("nats-jetstream", set()),
    ("cluster-sharded", {"bus_bytes_per_message", "resubscribe_max_s"})])
def test_the_checker_adds_the_brokers_extra_measures(name, metrics):
    _, values, _ = runner.check(plan(load(name)), History())
    assert {m.value for m in values} >= metrics
    assert not {m.value for m in values} & {"bus_bytes_per_message", "resubscribe_max_s"} - metrics


@pytest.mark.parametrize(("name", "server"), [
    ("no-broker", "redis"), ("pubsub", "redis"), ("streams", "redis"), ("nats", "nats"), ("nats-jetstream", "nats"),
    ("cluster-pubsub", "redis")])
def test_a_run_reports_where_its_brokers_image_came_from(name, server):
    assert image_sources(load(name), "app source", IMAGES) == {"app": "app source", server: "t", "nginx": "t"}
