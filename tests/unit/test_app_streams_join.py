"""A replica's Redis Streams reader and the members that join a room at once. The reader starts a room at its
end when the room gets its first member here; a member welcomed (and replayed up to the end) before that
position is known would miss what is added between its replay and the reader's start. Every member waits for
it, not only the first. Redis is a stand-in whose XREVRANGE answers only when the test says so."""

from __future__ import annotations

import asyncio

from labs.app.streams import RedisStreams


class SlowRedis:
    """XREVRANGE waits for `answer`; the room's newest entry is then `newest` (id, sequence number)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.newest = (b"5-0", 5)

    async def xrevrange(self, key: str, count: int) -> list:
        await self.answer.wait()
        sid, n = self.newest
        return [(sid, {b"n": str(n).encode()})]


def test_a_second_member_waits_until_the_reader_knows_where_the_room_starts() -> None:
    async def scenario() -> tuple[bool, dict[str, str]]:
        streams = RedisStreams("redis://unused")
        streams.redis = SlowRedis()  # type: ignore[assignment]
        first = asyncio.ensure_future(streams.join("lobby"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(streams.join("lobby"))
        await asyncio.sleep(0.05)
        returned_early = second.done()
        streams.redis.newest = (b"9-0", 9)  # entries added while the first member's lookup was under way
        streams.redis.answer.set()
        await asyncio.gather(first, second)
        return returned_early, dict(streams.positions)

    returned_early, positions = asyncio.run(scenario())
    assert not returned_early
    assert positions == {"lobby": "9-0"}


def test_a_room_emptied_and_joined_again_starts_from_its_end_then() -> None:
    async def scenario() -> dict[str, str]:
        streams = RedisStreams("redis://unused")
        streams.redis = SlowRedis()  # type: ignore[assignment]
        streams.redis.answer.set()
        await streams.join("lobby")
        await streams.leave("lobby")
        streams.redis.newest = (b"12-0", 12)
        await streams.join("lobby")
        return dict(streams.positions)

    assert asyncio.run(scenario()) == {"lobby": "12-0"}
