"""The broker registry: one entry per broker says how its containers are built, what the harness asks it
after a run, what it meters during one, and which extra measures its runs have. Its facts without Docker
(container, capabilities, faults, names) are the scenario's (`Broker.facts`); `spec` and `runner` ask here
instead of branching on the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .accounting.cluster import cluster_measures
from .accounting.history import History
from .errors import ImageError
from .infra import inspect, redis_cluster
from .infra.images import Image, ImageSet
from .infra.running import RunningStack
from .infra.stack import NATS_URL, nats_backend
from .scenario import Broker, BrokerFacts, FaultKind, Metric, Scenario

#: Redis Streams keep an append-only file fsynced on every write: a restarted Redis loses nothing
STREAMS_ARGS = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
#: nats-server's limit for a slow-consumer scenario: it closes a connection whose write blocked for 1 s (10 s
#: by default). Not a small max_pending: nats-server 2.9 first stalls the publishers of a consumer past half
#: of it (up to 1 s each time), so a frozen consumer's backlog only trickles in, and a JetStream consumer
#: catching up after the fault bursts past it again and again (each time cut off, each time restarted).
NATS_SLOW = {"write_deadline": 1.0}

#: a broker's options for `StackSpec` (backends, broker_url, redis_args, form), given the scenario and images
Options = Callable[[Scenario, ImageSet], dict[str, Any]]
#: what a broker says after a run, as `History.probes` entries, given the replicas' health
Probe = Callable[[RunningStack, Scenario, dict[str, Any]], dict[str, Any]]
Measures = Callable[[History], dict[Metric, float | None]]


class Meter(Protocol):
    """Readings around the workload: `begin` before the clients join, `end` after the drain, which gives
    its `History.probes` entries."""

    def begin(self) -> None: ...

    def end(self) -> dict[str, Any]: ...


class Unmetered:
    def begin(self) -> None:
        pass

    def end(self) -> dict[str, Any]:
        return {}


@dataclass
class ClusterMeter:
    """What the run cost each node of a Redis Cluster: `History.probes["cluster"]`."""

    meter: redis_cluster.Meter

    def begin(self) -> None:
        self.meter.begin()

    def end(self) -> dict[str, Any]:
        return {"cluster": self.meter.end()}


def no_options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
    return {}


def no_probe(stack: RunningStack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, Any]:
    return {}


def unmetered(stack: RunningStack, scenario: Scenario) -> Meter:
    return Unmetered()


def no_measures(history: History) -> dict[Metric, float | None]:
    return {}


def streams_options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
    return {"redis_args": STREAMS_ARGS}


def nats_options(*, jetstream: bool) -> Options:
    """nats-server instead of Redis (JetStream with its store under /tmp); with a slow consumer, a server
    that closes a connection it cannot write to soon (NATS_SLOW)."""
    def options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
        if images.nats is None:
            raise ImageError("no image with nats-server: run `make images`")
        slow = any(f.kind is FaultKind.SLOW_CONSUMER for f in scenario.faults)
        limits: dict[str, Any] = NATS_SLOW if slow else {}
        return {"backends": (nats_backend(images.nats.tag, jetstream=jetstream, **limits),), "broker_url": NATS_URL}

    return options


def cluster_options(scenario: Scenario, images: ImageSet) -> dict[str, Any]:
    """A Redis Cluster's nodes, the masters' URLs for the replicas, and the formation step."""
    top = scenario.topology
    return {"backends": redis_cluster.cluster_backends(images.redis.tag, top.cluster_masters, top.cluster_replicas),
            "broker_url": redis_cluster.broker_url(top.cluster_masters),
            "form": redis_cluster.Former(top.cluster_masters, top.cluster_replicas)}


def pubsub_probe(stack: RunningStack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, Any]:
    """Which replica has members in how many rooms, and how many channels Redis says each replica's
    subscriber holds (fewer than it needs: a deaf replica). A replica that did not answer: None."""
    if "redis" not in stack.containers:
        return {}
    answered = {name for name, r in replicas.items() if r.get("status") == 200}
    return {"members": {name: sum(1 for n in r.get("rooms", {}).values() if n) if name in answered else None
                        for name, r in replicas.items()},
            "subscriptions": inspect.pubsub_subscriptions(stack)}


def streams_probe(stack: RunningStack, scenario: Scenario, replicas: dict[str, Any]) -> dict[str, Any]:
    """The first entry each room's stream still holds."""
    if "redis" not in stack.containers:
        return {}
    rooms = sorted({scenario.workload.room_for(i) for i in range(scenario.workload.clients)})
    return {"stream_first_seq": inspect.stream_first_seq(stack, rooms)}


def cluster_meter(stack: RunningStack, scenario: Scenario) -> Meter:
    top = scenario.topology
    return ClusterMeter(redis_cluster.Meter(stack, redis_cluster.node_names(top.cluster_masters,
                                                                             top.cluster_replicas)))


@dataclass(frozen=True)
class Entry:
    broker: Broker
    #: no options: the stack's one Redis with its defaults (or, for broker none, no broker container)
    options: Options = no_options
    probe: Probe = no_probe
    meter: Callable[[RunningStack, Scenario], Meter] = unmetered
    #: its runs' extra measures (`facts.measures`, from the history)
    measures: Measures = no_measures
    #: the image its containers run, by its name in `ImageSet` and in a run's report (a run without a broker
    #: reports the redis image too)
    image: str = "redis"

    @property
    def facts(self) -> BrokerFacts:
        return self.broker.facts

    def server_image(self, images: ImageSet) -> Image | None:
        return {"redis": images.redis, "nats": images.nats}[self.image]


REGISTRY: dict[Broker, Entry] = {
    Broker.NONE: Entry(Broker.NONE),
    Broker.REDIS_PUBSUB: Entry(Broker.REDIS_PUBSUB, probe=pubsub_probe),
    Broker.SEED_GLOB: Entry(Broker.SEED_GLOB),
    Broker.REDIS_STREAMS: Entry(Broker.REDIS_STREAMS, options=streams_options, probe=streams_probe),
    Broker.NATS: Entry(Broker.NATS, options=nats_options(jetstream=False), image="nats"),
    Broker.NATS_JETSTREAM: Entry(Broker.NATS_JETSTREAM, options=nats_options(jetstream=True), image="nats"),
    **{broker: Entry(broker, options=cluster_options, meter=cluster_meter, measures=cluster_measures)
       for broker in (Broker.REDIS_CLUSTER_PUBSUB, Broker.REDIS_CLUSTER_SHARDED)},
}


def entry(broker: Broker) -> Entry:
    return REGISTRY[broker]
