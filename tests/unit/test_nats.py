"""NATS and JetStream without a server: rooms as subjects, which faults fit which broker, the nats-server
container's command, and how a JetStream reader delivers, deduplicates and notices a gap."""

from __future__ import annotations

import asyncio
import json
import string
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from labs.app import ID_RE
from labs.app.jetstream import NatsJetStream, Reader, ack_sequences, frame_of, sid_of
from labs.app.server import SID_RE
from labs.app.streams import sid_key
from labs.errors import ImageError, ScenarioError
from labs.infra.images import Image, ImageSet
from labs.infra.stack import NATS_URL, nats_backend
from labs.scenario import Broker, FaultKind, load, parse
from labs.scenario.model import ROOM_RE
from labs.settings import ROOT
from labs.spec import broker_options

#: what a NATS subject token may not contain: the separator, the wildcards, whitespace
NOT_IN_A_TOKEN = set(".*>") | set(string.whitespace)

NATS_FAULT = """
[topology]
replicas = 3
broker = "{broker}"
[workload]
clients = 4
messages = 40
rate = 20
reconnect = true
[[faults]]
kind = "{kind}"
{target}
at = 0.5
heal_after = 0.5
[expect]
lost_outside_fault = 0
"""


def nats_fault(broker: str, kind: str, target: str | None = None) -> str:
    return NATS_FAULT.format(broker=broker, kind=kind, target=f'target = "{target}"' if target else "")


# -- rooms are subjects ------------------------------------------------------------------------------------

def test_every_room_the_lab_accepts_is_one_nats_subject_token():
    """ROOM_RE (scenarios) and ID_RE (the replica) allow only [A-Za-z0-9_-]: no '.', '*', '>' or whitespace,
    so `chat.<room>` is always a valid subject of exactly two tokens and never a wildcard."""
    allowed = set(string.ascii_letters + string.digits + "_-")
    for char in map(chr, range(128)):
        assert bool(ROOM_RE.fullmatch(char)) == (char in allowed)
        assert bool(ID_RE.fullmatch(char)) == (char in allowed)
    assert not allowed & NOT_IN_A_TOKEN


@pytest.mark.parametrize("room", ["a.b", "chat.*", ">", "a b", "lobby\t", "*"])
def test_a_room_nats_subjects_cannot_carry_is_refused_in_one_line(room: str):
    text = nats_fault("nats", "kill-replica", "app-2").replace("rate = 20", f"rate = 20\nroom = {json.dumps(room)}")
    with pytest.raises(ScenarioError, match=r"room must match"):
        parse(text, name="bad-room")


# -- which faults fit which broker ----------------------------------------------------------------------

@pytest.mark.parametrize("broker, kind, target, message", [
    ("nats", "restart-redis", "nats", "restart-redis needs a Redis broker (use restart-broker), this topology has nats"),
    ("nats-jetstream", "pause-redis", None, "pause-redis needs a Redis broker (use pause-broker), this topology has "
                                            "nats-jetstream"),
    ("nats", "kill-pubsub-clients", None, "kill-pubsub-clients needs a Redis broker, this topology has nats"),
    ("redis-pubsub", "restart-broker", "nats", "restart-broker targets redis, got 'nats' (the broker's container)"),
    ("nats", "pause-broker", "redis", "pause-broker targets nats, got 'redis' (the broker's container)"),
    ("none", "restart-broker", None, "restart-broker needs a broker, this topology has none"),
    ("redis-streams", "slow-consumer", "app-2", "slow-consumer needs broker redis-pubsub or nats or nats-jetstream, "
                                               "this topology has redis-streams"),
])
def test_a_fault_that_does_not_fit_the_broker_is_refused(broker: str, kind: str, target: str | None, message: str):
    with pytest.raises(ScenarioError) as info:
        parse(nats_fault(broker, kind, target), name="bad")
    assert str(info.value).endswith(message)


@pytest.mark.parametrize("broker, kind, target", [
    ("nats", "restart-broker", "nats"), ("nats-jetstream", "pause-broker", "nats"),
    ("redis-pubsub", "restart-broker", "redis"), ("redis-streams", "pause-redis", "redis"),
    ("nats", "slow-consumer", "app-2"), ("nats-jetstream", "partition-replica", "app-1"),
])
def test_the_faults_that_fit_are_accepted_and_a_broker_fault_defaults_to_the_brokers_container(
        broker: str, kind: str, target: str):
    given = parse(nats_fault(broker, kind, target), name="ok").faults[0]
    assert (given.kind, given.target) == (FaultKind(kind), target)
    if not given.kind.targets_replica:
        assert parse(nats_fault(broker, kind), name="ok").faults[0].target == target


def test_a_nats_fault_on_a_redis_scenario_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "nats-fault-on-redis.toml"
    path.write_text(nats_fault("redis-pubsub", "pause-broker", "nats"))
    r = subprocess.run([sys.executable, "-m", "labs", "run", str(path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "pause-broker targets redis, got 'nats'" in lines[0]


def test_the_shipped_nats_scenarios_declare_what_each_broker_guarantees():
    """JetStream loses nothing under any fault; core NATS only inside the fault's window."""
    for name in ("nats", "nats-jetstream"):
        assert load(name).expect  # the headline loads
    for fault in ("kill-replica", "partition", "pause-broker", "restart-broker", "slow-consumer"):
        js, core = load(f"fault-jetstream-{fault}"), load(f"fault-nats-{fault}")
        assert js.topology.broker is Broker.NATS_JETSTREAM and core.topology.broker is Broker.NATS
        assert js.expect[next(m for m in js.expect if m.value == "lost")].max == 0
        assert core.expect[next(m for m in core.expect if m.value == "lost_outside_fault")].max == 0


# -- the nats-server container ----------------------------------------------------------------------------

def test_nats_server_runs_jetstream_with_its_store_under_tmp_and_a_write_deadline_only_when_asked():
    plain = nats_backend("img").command[-1]
    assert "-js" not in plain and "write_deadline" not in plain and "exec nats-server -c /tmp/nats.conf" in plain
    js = nats_backend("img", jetstream=True, write_deadline=1.0)
    assert js.name == "nats" and js.ready_log == b"Server is ready"
    assert "-js --store_dir /tmp/js" in js.command[-1] and 'write_deadline: "1s"' in js.command[-1]
    limited = nats_backend("img", max_pending=32768).command[-1]
    assert "max_pending: 32768" in limited and "max_payload: 16384" in limited  # max_payload <= max_pending


def images_with(nats: Image | None) -> ImageSet:
    some = Image("wslab/base:x", "test")
    return ImageSet(app=some, redis=some, nginx=some, nats=nats)


def test_a_nats_scenario_runs_nats_server_instead_of_redis_with_small_buffers_for_a_slow_consumer():
    options = broker_options(load("fault-nats-slow-consumer"), images_with(Image("wslab/base:x", "test")))
    (backend,) = options["backends"]
    assert options["broker_url"] == NATS_URL and backend.name == "nats"
    assert options["small_buffers"] == ("app-2", "nats")
    assert 'write_deadline: "1s"' in backend.command[-1] and "-js" not in backend.command[-1]
    js = broker_options(load("nats-jetstream"), images_with(Image("wslab/base:x", "test")))
    assert "-js" in js["backends"][0].command[-1] and "write_deadline" not in js["backends"][0].command[-1]
    assert "backends" not in broker_options(load("pubsub"), images_with(None))


def test_a_nats_scenario_without_a_nats_image_says_what_to_run():
    with pytest.raises(ImageError, match="make images"):
        broker_options(load("nats"), images_with(None))


# -- JetStream's place in a room, as the clients see it -------------------------------------------------

def test_a_stream_sequence_is_a_sid_the_server_compares_and_resumes_by():
    assert SID_RE.match(sid_of(57)) and sid_key(sid_of(57)) == (57, 0)
    assert sid_key(sid_of(9)) < sid_key(sid_of(10)) < sid_key(sid_of(100))
    frame = json.loads(frame_of(b'{"type": "msg", "id": "m1"}', 12))
    assert frame == {"type": "msg", "id": "m1", "sid": "12-0", "seq": 12}


@pytest.mark.parametrize("reply, sequences", [
    ("$JS.ACK.CHAT.c1.1.57.3.1700000000000000000.0", (57, 3)),
    ("$JS.ACK.hub.acc.CHAT.c1.1.57.3.1700000000000000000.0.tok", (57, 3)),
])
def test_the_stream_and_consumer_sequences_come_from_the_reply_subject(reply: str, sequences: tuple[int, int]):
    assert ack_sequences(reply) == sequences


@pytest.mark.parametrize("reply", ["_INBOX.x", "$JS.ACK.CHAT.c1.1.57", ""])
def test_a_reply_subject_that_is_not_jetstreams_is_refused(reply: str):
    with pytest.raises(ValueError):
        ack_sequences(reply)


# -- a reader: deliver once, in order; a gap means start again --------------------------------------------

@dataclass
class Msg:
    data: bytes = b""
    reply: str = ""
    headers: dict[str, str] | None = None


@dataclass
class FakeConnection:
    published: list[str] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.published.append(subject)


def reader_for(room: str, position: int) -> tuple[NatsJetStream, Reader, list[tuple[str, dict[str, Any]]]]:
    broker = NatsJetStream("nats://test:4222", name="app-1")
    delivered: list[tuple[str, dict[str, Any]]] = []
    broker.deliver = lambda r, frame: delivered.append((r, json.loads(frame)))
    broker.nc = FakeConnection()
    broker.positions[room] = position
    reader = broker.readers[room] = Reader(room)
    return broker, reader, delivered


def data(msg_id: str, sseq: int, dseq: int) -> Msg:
    return Msg(json.dumps({"type": "msg", "id": msg_id}).encode(), f"$JS.ACK.CHAT.c.1.{sseq}.{dseq}.0.0")


def test_a_reader_delivers_after_its_position_once_and_skips_what_it_already_delivered():
    broker, reader, delivered = reader_for("lobby", 10)

    async def feed() -> None:
        for msg in (data("old", 9, 1), data("a", 11, 2), data("b", 14, 3), data("a-again", 11, 4)):
            await broker._on_message(reader, msg)

    asyncio.run(feed())
    assert [(f["id"], f["seq"], f["sid"]) for _, f in delivered] == [("a", 11, "11-0"), ("b", 14, "14-0")]
    assert broker.positions["lobby"] == 14 and not reader.broken


def test_a_skipped_consumer_sequence_breaks_the_reader_so_that_it_starts_again_after_its_position():
    broker, reader, delivered = reader_for("lobby", 10)

    async def feed() -> None:
        await broker._on_message(reader, data("a", 11, 1))
        await broker._on_message(reader, data("c", 13, 3))  # consumer sequence 2 never arrived

    asyncio.run(feed())
    assert [f["id"] for _, f in delivered] == ["a"] and reader.broken and broker.positions["lobby"] == 11


def test_a_heartbeat_naming_a_later_consumer_sequence_breaks_the_reader_and_flow_control_is_answered():
    broker, reader, delivered = reader_for("lobby", 0)

    async def feed() -> None:
        await broker._on_message(reader, Msg(reply="fc.reply", headers={"Status": "100"}))
        await broker._on_message(reader, Msg(headers={"Status": "100", "Nats-Last-Consumer": "0"}))
        assert not reader.broken
        await broker._on_message(reader, Msg(headers={"Status": "100", "Nats-Last-Consumer": "2"}))

    asyncio.run(feed())
    assert broker.nc.published == ["fc.reply"] and reader.broken and delivered == []


def test_a_replaced_readers_messages_are_ignored():
    broker, reader, delivered = reader_for("lobby", 0)
    broker.readers["lobby"] = Reader("lobby")
    asyncio.run(broker._on_message(reader, data("a", 1, 1)))
    assert delivered == [] and broker.positions["lobby"] == 0


def test_every_fault_kind_and_broker_has_a_name_in_the_fault_bench_table():
    from labs.bench.faults import FAULT_TEXT

    assert set(FAULT_TEXT) == {kind.value for kind in FaultKind}
    assert (Broker.NATS.facts.label, Broker.NATS_JETSTREAM.facts.label) == ("NATS", "JetStream")
