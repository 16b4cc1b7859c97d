"""The Socket.IO link's recovery state (labs/protocols/recovery.py) speaks socket.io-client's wire format:
literal packets from its lib/socket.ts rules, then frames recorded from socket.io-client 4.8 itself across a
recovery against the seed Node server (tests/node/recovery_frames.mjs, tests/unit/data/recovery_frames.json):
fed the frames the real client read, the state writes the CONNECT packets the real client wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from socketio import packet

from labs.protocols.recovery import RecoveryState

FRAMES = Path(__file__).parent / "data" / "recovery_frames.json"


def connect_frame(state: RecoveryState) -> str:
    """The CONNECT packet python-socketio writes for this state's auth (the link passes it as `auth`), as an
    Engine.IO message on the wire ("4" first)."""
    return "4" + str(packet.Packet(packet.CONNECT, data=state.connect_auth() or None).encode())


def test_a_client_without_a_session_id_sends_its_own_auth_only() -> None:
    state = RecoveryState()
    assert state.connect_auth() is None
    assert state.connect_auth({"token": "t"}) == {"token": "t"}


def test_the_answers_pid_and_the_last_string_argument_of_each_event_are_sent_back_in_order() -> None:
    state = RecoveryState()
    state.opening()
    assert state.on_connect({"sid": "s1", "pid": "p1"}) is False
    state.on_event(["new-message", {"id": "m1"}, "1700000000000-0"])
    state.on_event(["new-message", {"id": "m2"}, "1700000000000-1"])
    state.on_event(["new-message", {"id": "m3"}])  # an event stored for no replay: no offset
    assert state.connect_auth({"token": "t"}) == {"pid": "p1", "offset": "1700000000000-1", "token": "t"}
    assert connect_frame(state) == '40{"pid":"p1","offset":"1700000000000-1"}'


def test_an_event_with_no_arguments_leaves_its_name_as_the_offset_as_socket_io_client_does() -> None:
    state = RecoveryState(pid="p1")
    state.connected = True
    state.on_event(["ping"])
    assert state.offset == "ping"


def test_a_session_id_but_no_event_yet_sends_the_pid_alone() -> None:
    state = RecoveryState()
    state.on_connect({"sid": "s1", "pid": "p1"})
    assert connect_frame(state) == '40{"pid":"p1"}'


def test_recovered_only_when_the_answer_carries_the_pid_that_was_sent() -> None:
    state = RecoveryState(pid="p1", offset="1-0")
    state.opening()
    assert state.on_connect({"sid": "s2", "pid": "p1"}) is True
    state.opening()
    assert state.on_connect({"sid": "s3", "pid": "p9"}) is False
    assert (state.pid, state.offset) == ("p9", "1-0")  # socket.io-client keeps its last offset
    state.opening()
    assert state.on_connect({"sid": "s4"}) is False and state.pid is None  # a server without recovery


def test_events_before_the_answer_are_taken_after_its_pid() -> None:
    """The server writes what it replays before its CONNECT answer."""
    state = RecoveryState()
    state.opening()
    state.on_event(["new-message", {"id": "m1"}, "5-0"])
    assert state.offset is None
    state.on_connect({"sid": "s1", "pid": "p1"})
    assert state.offset == "5-0"


def recorded() -> dict[str, dict[str, object]]:
    if not FRAMES.is_file():
        pytest.fail(f"{FRAMES} is missing: record it with tests/node/recovery_frames.mjs")
    return dict(json.loads(FRAMES.read_text())["clients"])


@pytest.mark.parametrize("name", ["listener", "fresh"])
def test_fed_what_socket_io_client_read_the_state_writes_the_connects_it_wrote(name: str) -> None:
    client = recorded()[name]
    frames = client["frames"]
    assert isinstance(frames, list)
    state = RecoveryState()
    recovered: list[bool] = []
    connects = 0
    for way, text in frames:
        assert text.startswith("4"), text  # an Engine.IO message
        p = packet.Packet(encoded_packet=text[1:])
        if way == "out" and p.packet_type == packet.CONNECT:
            state.opening()
            assert connect_frame(state) == text, (connects, text)
            connects += 1
        elif way == "in" and p.packet_type == packet.CONNECT:
            recovered.append(state.on_connect(p.data))
        elif way == "in" and p.packet_type == packet.EVENT:
            state.on_event(p.data)
    assert connects == 2
    assert recovered[-1] is client["recovered"]
