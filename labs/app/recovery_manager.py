"""A python-socketio client manager whose every emit goes through one Redis stream, so that a client which
comes back can be sent what it missed.

An emit is one XADD to `STREAM` (capped by an approximate MAXLEN), whoever it is for, numbered densely
("<n>-0", from the counter `COUNTER`, in one script). Every replica reads
the stream from its end with plain XREAD and sends each entry to its own sockets it is addressed to, with
the entry's id appended as the event's last argument: that id is the client's offset. A replayed socket
gets the entries after its offset straight from the stream (XRANGE, in batches, as many as there are)
up to where this replica's reader is, and from there on from the reader, so it gets each entry once:

- `position` is the id of the last entry the reader has addressed; it moves and the entry's recipients are
  chosen in one step, without an await between them;
- a socket in `catching_up` is skipped by the reader: `None` while its replay runs, or an offset the
  reader has not reached yet (the client came from a replica whose reader was ahead of this one's), up to
  and including which it is skipped;
- the replay reads up to `position`, and hands the socket to the reader only once it has sent everything up
  to a `position` that did not move meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import redis.asyncio as redis_asyncio
import redis.exceptions
import socketio
from engineio import packet as eio_packet
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from socketio import packet

from .recovery import ORIGIN, Logged, decode_logged, encode_logged, entry_id, entry_number, gap_free, later

log = logging.getLogger("wslab.sio.recovery")
STREAM = "sio:stream"
COUNTER = "sio:stream:n"
# Add entry n+1 as "<n+1>-0" (ARGV[1]: the approximate MAXLEN, ARGV[2]: the packet); returns n+1.
NUMBERED_XADD = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], n .. '-0', 'p', ARGV[2])
return n
"""
#: entries per XRANGE of a replay, and per XREAD of the reader
BATCH = 500
#: a command that fails on a broken connection is tried again for about 5 s (redis-py's default gives up
#: within a second), so an emit outlives a Redis restart instead of being refused to its sender; one whose
#: reply was lost may then be added twice
RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=12)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Trimmed(Exception):
    """Entries after the offset a client asked for are no longer in the stream (MAXLEN trimmed them)."""


class Gone(Exception):
    """The socket being replayed to disconnected."""


class StreamManager(socketio.AsyncManager):
    BLOCK_MS = 400

    def __init__(self, redis_url: str, *, name: str = "", maxlen: int = 100_000) -> None:
        super().__init__()
        self.redis_url, self.name, self.maxlen = redis_url, name, maxlen
        self.redis: Any = None
        self.position = ORIGIN
        self.catching_up: dict[str, str | None] = {}
        self.stats: Counter[str] = Counter()
        self.listening = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> None:
        """Connect (Redis may start after this replica: retry for `timeout` s), read from the stream's end."""
        # A command waits for a free connection (up to 10 s) rather than failing when all 100 are busy, as
        # they are when every emit of a Redis restart is being tried again. A connect is bounded: to a Redis
        # container that is down, it would wait for the kernel's SYN retries (1 s, then 2 s, 4 s...), and
        # every delivery with it.
        pool = redis_asyncio.BlockingConnectionPool.from_url(self.redis_url, client_name=self.name or None,
                                                             retry=RETRY, max_connections=100, timeout=10,
                                                             socket_connect_timeout=0.5)
        self.redis = redis_asyncio.Redis(connection_pool=pool)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                newest = await self.redis.xrevrange(STREAM, count=1)
                break
            except REDIS_ERRORS:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.position = newest[0][0].decode() if newest else ORIGIN
        self.xadd = self.redis.register_script(NUMBERED_XADD)
        self.tasks.append(asyncio.create_task(self._read()))
        self.listening.set()

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        """Add the emit to the stream; the readers of every replica, this one's included, deliver it. An emit
        with an ack callback cannot be replayed elsewhere (socket.io does not store those either): it goes
        to this replica's sockets only, without an offset."""
        room = to or room
        if callback is not None or kwargs.get("ignore_queue"):
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        rooms = None if room is None else (room,) if isinstance(room, str) else tuple(room)
        skip = () if skip_sid is None else tuple(skip_sid) if isinstance(skip_sid, list) else (skip_sid,)
        entry = encode_logged(Logged(namespace, (event, *args), rooms, skip))
        await self.xadd(keys=[STREAM, COUNTER], args=[self.maxlen, entry])
        self.stats["published"] += 1

    def _recipients(self, logged: Logged, offset: str) -> list[str]:
        """The engine.io sids of this replica's sockets that get the entry from the reader now."""
        if logged.namespace not in self.rooms:
            return []
        room: Any = None if logged.rooms is None else list(logged.rooms)
        found = []
        for sid, eio_sid in self.get_participants(logged.namespace, room):
            if sid in logged.skip:
                continue
            if sid in self.catching_up:
                floor = self.catching_up[sid]
                if floor is None or not later(offset, floor):
                    continue
                del self.catching_up[sid]
            found.append(eio_sid)
        return found

    def _packets(self, logged: Logged, offset: str) -> list[eio_packet.Packet]:
        pkt = self.server.packet_class(packet.EVENT, namespace=logged.namespace, data=logged.with_offset(offset))
        encoded = pkt.encode()
        return [eio_packet.Packet(eio_packet.MESSAGE, p) for p in (encoded if isinstance(encoded, list) else [encoded])]

    async def _send(self, eio_sids: list[str], logged: Logged, offset: str) -> None:
        for p in self._packets(logged, offset):
            for eio_sid in eio_sids:
                await self.server._send_eio_packet(eio_sid, p)

    async def _read(self) -> None:
        """Deliver every new entry to this replica's sockets, from `position`; after a Redis error, resume
        from the same place."""
        failed = False
        while True:
            try:
                batches: Any = await self.redis.xread({STREAM: self.position}, block=self.BLOCK_MS, count=BATCH)
            except REDIS_ERRORS as exc:
                if not failed:
                    self.stats["read_errors"] += 1
                    log.warning("XREAD failed, resuming from %s: %r", self.position, exc)
                failed = True
                await asyncio.sleep(0.1)
                continue
            failed = False
            for _key, entries in batches:
                for raw_id, fields in entries:
                    offset = raw_id.decode()
                    if entry_number(offset) > entry_number(self.position) + 1:
                        self.stats["trimmed_unread"] += entry_number(offset) - entry_number(self.position) - 1
                        log.warning("entries after %s up to %s were trimmed before this replica read them",
                                    self.position, offset)
                    self.position = offset
                    logged = self._decode(fields)
                    recipients = [] if logged is None else self._recipients(logged, offset)
                    if logged is not None and recipients:
                        await self._send(recipients, logged, offset)

    def _decode(self, fields: dict[bytes, bytes]) -> Logged | None:
        try:
            return decode_logged(fields[b"p"])
        except (KeyError, ValueError) as exc:
            self.stats["bad_entries"] += 1
            log.warning("a stream entry that is no packet: %r", exc)
            return None

    async def check(self, start: str) -> None:
        """Raise Trimmed unless every entry after `start` is still in the stream and `start` is not beyond
        its last entry (an offset this stream never issued)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrange(STREAM, count=1)
            pipe.get(COUNTER)
            oldest, count = await pipe.execute()
        first = oldest[0][0].decode() if oldest else None
        if not gap_free(start, first) or entry_number(start) > int(count or 0):
            raise Trimmed(f"offset {start}: the oldest entry left is {first}, the last {entry_id(int(count or 0))}")

    async def replay(self, sid: str, eio_sid: str, namespace: str, rooms: tuple[str, ...], start: str) -> int:
        """Send socket `sid` every entry after `start` addressed to it, then leave it to the reader; return
        how many it was sent. The socket is in `catching_up` (None) when this is called. Raise Trimmed when
        entries it needs were trimmed meanwhile, and let a Redis error through: the caller drops the
        connection (the client comes back with the offset it has reached). Raise Gone when the socket left."""
        last, sent = start, 0
        while True:
            if self.eio_sid_from_sid(sid, namespace) != eio_sid:
                raise Gone(sid)
            target = self.position
            if not later(target, last):
                if later(last, target):
                    self.catching_up[sid] = last  # the reader is behind the client: skip what it already has
                else:
                    self.catching_up.pop(sid, None)
                return sent
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xrange(STREAM, min=f"({last}", max=target, count=BATCH)
                pipe.xrange(STREAM, count=1)
                entries, oldest = await pipe.execute()
            first = oldest[0][0].decode() if oldest else None
            if not gap_free(last, first):
                raise Trimmed(f"entries after {last} were trimmed during the replay: the oldest left is {first}")
            for raw_id, fields in entries:
                offset, logged = raw_id.decode(), self._decode(fields)
                if logged is not None and logged.namespace == namespace and logged.addressed(sid, rooms):
                    await self._send([eio_sid], logged, offset)
                    sent += 1
                    self.stats["replayed"] += 1
            last = entries[-1][0].decode() if len(entries) == BATCH else target

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()
