"""The pure part of the Socket.IO replica's connection state recovery (labs/app/recovery.py): offsets,
sessions and logged emits as text, what a CONNECT asks for, and the scenario key that turns it on."""

from __future__ import annotations

import json

import pytest
from socketio import packet

from labs.app.recovery import (
    BadRecovery,
    Logged,
    RecoveryRequest,
    Session,
    decode_logged,
    decode_session,
    encode_logged,
    encode_session,
    entry_id,
    entry_number,
    gap_free,
    later,
    parse_offset,
    recovery_request,
)
from labs.errors import ScenarioError
from labs.protocols.socketio import SocketIOProtocol
from labs.scenario.parse import parse

PID = "Zm9vYmFyYmF6cXV4MTIzNA"


def test_offsets_compare_as_stream_ids_not_as_text():
    assert parse_offset("1733464000000-12") == (1733464000000, 12)
    assert later("1733464000000-10", "1733464000000-9")  # "10" < "9" as text
    assert later("1733464000001-0", "1733464000000-99")
    assert not later("5-1", "5-1")


@pytest.mark.parametrize("bad", ["", "5", "5-", "-1", "5-1-2", "a-1", "1-1 ", "1" * 21 + "-0"])
def test_an_offset_that_is_no_stream_id_is_refused(bad):
    with pytest.raises(ValueError):
        parse_offset(bad)


def test_a_replay_is_gap_free_only_when_nothing_after_its_start_was_trimmed():
    assert gap_free("0-0", None)  # nothing in the stream
    assert gap_free("0-0", "1-0")  # nothing ever trimmed
    assert gap_free("100-0", "90-0")
    assert gap_free("100-0", "101-0")  # the start itself was trimmed, nothing after it
    assert not gap_free("100-0", "102-0")  # entry 101 is gone
    assert not gap_free("0-0", "2-0")  # a client that got nothing, from a stream trimmed since
    with pytest.raises(ValueError):
        gap_free("100-3", "101-0")  # not an id this stream numbers


def test_a_connect_asks_for_recovery_only_with_a_pid():
    assert recovery_request(None) is None
    assert recovery_request({"token": "x"}) is None
    assert recovery_request("pid") is None
    assert recovery_request({"pid": PID, "offset": "17-0", "token": "x"}) == RecoveryRequest(PID, "17-0")
    assert entry_id(17) == "17-0" and entry_number("17-0") == 17
    # a client that never got an event sends no offset (JSON drops socket.io-client's undefined)
    assert recovery_request({"pid": PID}) == RecoveryRequest(PID, None)


@pytest.mark.parametrize("auth", [{"pid": 5}, {"pid": "short"}, {"pid": PID + "/.."}, {"pid": "x" * 65},
                                  {"pid": PID, "offset": 17}, {"pid": PID, "offset": "17"},
                                  {"pid": PID, "offset": "17-1"},
                                  {"pid": PID, "offset": "1-0; DEL"}])
def test_a_pid_or_offset_no_server_issues_is_refused(auth):
    with pytest.raises(BadRecovery):
        recovery_request(auth)


def test_a_session_survives_its_text_form():
    s = Session("aBcD1234eFgH5678iJkL", PID, ("lobby", "r2"), {"room": "lobby", "client": "c01"}, "h0ld3r", "9-1")
    text = encode_session(s)
    assert json.loads(text) == {"sid": "aBcD1234eFgH5678iJkL", "pid": PID, "rooms": ["lobby", "r2"],
                                "data": {"room": "lobby", "client": "c01"}, "holder": "h0ld3r", "since": "9-1"}
    assert decode_session(text) == s
    assert decode_session(text.encode()) == s


@pytest.mark.parametrize("text", [
    "[]", "{}", '{"sid":"a","pid":"short","rooms":[],"data":{},"holder":"","since":"0-0"}',
    '{"sid":"a","pid":"Zm9vYmFyYmF6cXV4MTIzNA","rooms":"lobby","data":{},"holder":"","since":"0-0"}',
    '{"sid":"a","pid":"Zm9vYmFyYmF6cXV4MTIzNA","rooms":[],"data":[],"holder":"","since":"0-0"}',
    '{"sid":"a","pid":"Zm9vYmFyYmF6cXV4MTIzNA","rooms":[],"data":{},"holder":"","since":"soon"}',
    '{"sid":"","pid":"Zm9vYmFyYmF6cXV4MTIzNA","rooms":[],"data":{},"holder":"","since":"0-0"}',
])
def test_a_stored_session_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        decode_session(text)


def test_a_logged_emit_survives_its_text_form():
    logged = Logged("/", ("new-message", {"id": "m1", "ts": 1.5}), ("lobby",), ("sid-of-sender",))
    text = encode_logged(logged)
    assert text == '{"ns":"/","d":["new-message",{"id":"m1","ts":1.5}],"r":["lobby"],"x":["sid-of-sender"]}'
    assert decode_logged(text) == logged
    broadcast = Logged("/", ("notice",), None)
    assert decode_logged(encode_logged(broadcast)) == broadcast


@pytest.mark.parametrize("text", ['[]', '{"ns":"/","d":[],"r":null,"x":[]}', '{"ns":"/","d":[5],"r":null,"x":[]}',
                                  '{"ns":"/","d":["e"],"r":"lobby","x":[]}', '{"ns":"/","d":["e"],"r":null}'])
def test_a_stream_entry_that_is_no_logged_emit_is_refused(text):
    with pytest.raises(ValueError):
        decode_logged(text)


def test_who_a_logged_emit_is_addressed_to():
    to_room = Logged("/", ("new-message", {}), ("lobby",), ("s1",))
    assert to_room.addressed("s2", ("lobby",))
    assert not to_room.addressed("s1", ("lobby",))  # the sender it skipped
    assert not to_room.addressed("s3", ("other",))
    assert Logged("/", ("x",), ("s3",)).addressed("s3", ())  # to its own sid room
    assert Logged("/", ("x",), None).addressed("s3", ())  # to the whole namespace


def test_the_offset_is_the_events_last_argument_on_the_wire():
    """socket.io-client keeps an event's last argument as its offset when it is a string."""
    logged = Logged("/", ("new-message", {"id": "m1"}), ("lobby",))
    pkt = packet.Packet(packet.EVENT, namespace="/", data=logged.with_offset("1733464000000-0"))
    assert pkt.encode() == '2["new-message",{"id":"m1"},"1733464000000-0"]'


RECOVERING = """
[topology]
app = "socketio"
replicas = 2
broker = "redis-streams"
maxlen = 5000
max_disconnection_duration = 7.5
[workload]
clients = 4
messages = 5
[expect]
lost = 0
"""


def test_the_scenario_key_reaches_the_replicas_command_line():
    s = parse(RECOVERING, name="t")
    assert s.topology.max_disconnection_duration == 7.5
    assert SocketIOProtocol().replica_args(s) == ("--maxlen", "5000", "--max-disconnection-duration", "7.5")


def test_without_streams_the_socketio_replica_is_started_as_before():
    s = parse(RECOVERING.replace('"redis-streams"', '"redis-pubsub"').replace("maxlen = 5000\n", "")
              .replace("max_disconnection_duration = 7.5\n", ""), name="t")
    assert SocketIOProtocol().replica_args(s) == ()


@pytest.mark.parametrize("value", ["0.5", "86401", "nan", '"2m"'])
def test_a_max_disconnection_duration_out_of_range_is_refused(value):
    with pytest.raises(ScenarioError, match="max_disconnection_duration"):
        parse(RECOVERING.replace("7.5", value), name="t")
