"""What the replica accepts from a client, and how it refuses the rest: literals in, a message or a close code out."""

from __future__ import annotations

import asyncio

import pytest

from labs.app.brokers import NoBroker, Replay
from labs.app.server import BadFrame, Message, check_message, parse_frame


@pytest.mark.parametrize("frame, message", [
    ('{"id": "c01-7", "ts": 12.5}', Message("c01-7", 12.5, "")),
    ('{"id": 42, "ts": 1}', Message("42", 1, "")),  # a non-negative integer id is relayed as a string
    ('{"id": 0}', Message("0", None, "")),  # ts may be absent
    ('{"id": "a", "ts": 1, "body": "hi", "extra": [1]}', Message("a", 1, "hi")),  # other keys are ignored
    ('{"id": "' + "x" * 64 + '", "ts": -3e5}', Message("x" * 64, -3e5, "")),
    ('{"id": "b", "body": "' + "y" * 65536 + '"}', Message("b", None, "y" * 65536)),
])
def test_a_valid_message_is_parsed(frame: str, message: Message) -> None:
    assert parse_frame(frame) == message


@pytest.mark.parametrize("frame, code", [
    (b'{"id": "a", "ts": 1}', 1003),  # valid JSON, but binary
    (b"", 1003),
    ("hello", 1007),
    ("", 1007),
    ('{"id": "a", "ts": NaN}', 1007),  # Python's json would accept it; JSON does not
    ('{"id": "a", "ts": Infinity}', 1007),
    ('{"id": "a"', 1007),
    ("[]", 1008),
    ('[{"id": "a", "ts": 1}]', 1008),
    ('"a string"', 1008),
    ("null", 1008),
    ("17", 1008),
    ("{}", 1008),
    ('{"ts": 1}', 1008),
    ('{"id": null, "ts": 1}', 1008),
    ('{"id": {"a": 1}, "ts": 1}', 1008),
    ('{"id": ["a"], "ts": 1}', 1008),
    ('{"id": true, "ts": 1}', 1008),  # a bool is not an integer id
    ('{"id": -1, "ts": 1}', 1008),
    ('{"id": 1.5, "ts": 1}', 1008),
    ('{"id": "", "ts": 1}', 1008),
    ('{"id": "a b", "ts": 1}', 1008),
    ('{"id": "' + "x" * 65 + '", "ts": 1}', 1008),
    ('{"id": ' + "9" * 65 + ', "ts": 1}', 1008),  # an integer id is held to 64 characters too
    ('{"id": "a", "ts": "now"}', 1008),
    ('{"id": "a", "ts": null}', 1008),
    ('{"id": "a", "ts": true}', 1008),
    ('{"id": "a", "ts": 1e400}', 1008),  # parses to inf: not finite
    ('{"id": "a", "ts": 1, "body": 5}', 1008),
    ('{"id": "a", "ts": 1, "body": null}', 1008),
    ('{"id": "a", "body": "' + "y" * 65537 + '"}', 1008),
    ("[" * 100_000 + "]" * 100_000, 1008),  # nested too deeply for the parser
    ("1" * 5000, 1008),  # an integer longer than int() converts
])
def test_a_bad_frame_is_refused_with_a_policy_close_code_and_a_short_reason(frame: str | bytes, code: int) -> None:
    with pytest.raises(BadFrame) as refused:
        parse_frame(frame)
    assert refused.value.code == code
    assert 0 < len(refused.value.reason.encode()) <= 123  # what fits in a close frame


def test_a_reason_names_the_problem_not_the_value() -> None:
    with pytest.raises(BadFrame) as refused:
        parse_frame('{"id": {"secret": "' + "z" * 1000 + '"}}')
    assert refused.value.reason == "id must be a string or a non-negative integer, not an object"


def test_check_message_takes_decoded_values_as_the_socketio_replica_gets_them() -> None:
    assert check_message({"id": "m1", "ts": 3}) == Message("m1", 3, "")
    with pytest.raises(ValueError, match="no id"):
        check_message({"ts": 3})


def test_a_replay_counts_the_inclusive_range_it_says_was_trimmed() -> None:
    assert Replay(["f"], (5, 9)).trimmed_count == 5
    assert Replay([], (3, 3)).trimmed_count == 1
    assert Replay(["f"]).trimmed_count == 0


def test_a_broker_that_keeps_nothing_replays_nothing_and_acks_with_no_extra_fields() -> None:
    async def scenario() -> None:
        broker = NoBroker("redis://unused", name="app-1")
        await broker.start(lambda room, frame: delivered.append((room, frame)))
        assert not broker.durable
        assert await broker.publish("r", {"id": "a"}) == {}
        assert await broker.replay("r", "0-0", 0) == Replay([])

    delivered: list[tuple[str, str]] = []
    asyncio.run(scenario())
    assert delivered == [("r", '{"id": "a"}')]
