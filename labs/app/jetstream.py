"""NATS JetStream broker: durable rooms that a reconnecting client can replay from where it left off.

One stream, `CHAT`, over the room subjects `chat.>`, in files (the server's store directory), with no
limits: nothing is ever trimmed. A message's place in a room is its stream sequence number, carried to the
clients in the fields the Redis Streams broker uses: `seq` is that number and `sid` is "<seq>-0", so the
server's resume logic (compare sids, replay after a sid) works unchanged.

Each replica reads every message of the rooms it has members in, with one push consumer per room of its
own (filtered on the room's subject, no acks, idle heartbeats every 0.5 s, flow control): an "ordered
consumer" done by hand, because the replica must decide where it restarts. It remembers the last stream
sequence it delivered per room; when a consumer goes quiet (no heartbeat for STALE seconds: the server
restarted, was frozen, or this replica was cut off) or skips a consumer sequence number (something was
dropped on the way), a watchdog replaces it with a new one starting right after that sequence. Nothing is
lost and, since every room keeps its last sequence, nothing is delivered twice.

A publish is retried until the server answers (through restarts, pauses and partitions) with the same
`Nats-Msg-Id` header, `<room>:<message id>`: within the stream's duplicate window (2 minutes) the server
stores a resend once and answers `duplicate`, so a client's resend of a message whose ack it never got adds
no second entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .brokers import Deliver, PublishFailed, Replay
from .nats_core import START_TIMEOUT, NatsBroker, subject

log = logging.getLogger("wslab.jetstream")

STREAM = "CHAT"
#: seconds between the server's idle heartbeats on a consumer, and without any sign of one before the
#: watchdog replaces it
HEARTBEAT = 0.5
STALE = 1.5
CHECK_EVERY = 0.2


def sid_of(seq: int) -> str:
    """The client-facing id of stream sequence `seq` (the shape of a Redis stream id, so the server can
    compare and resume the same way)."""
    return f"{seq}-0"


def frame_of(data: bytes, seq: int) -> str:
    frame = json.loads(data)
    frame["sid"], frame["seq"] = sid_of(seq), seq
    return json.dumps(frame)


def ack_sequences(reply: str) -> tuple[int, int]:
    """(stream sequence, consumer sequence) from a JetStream message's reply subject: v1
    `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>` (what
    nats-server 2.9 sends), or v2, which puts `<domain>.<account hash>` after `$JS.ACK` and may end with
    more tokens."""
    tokens = reply.split(".")
    if tokens[:2] != ["$JS", "ACK"] or not (len(tokens) == 9 or len(tokens) >= 11):
        raise ValueError(f"not a JetStream reply subject: {reply!r}")
    at = 5 if len(tokens) == 9 else 7
    return int(tokens[at]), int(tokens[at + 1])


@dataclass
class Reader:
    """One room's push consumer: its inbox subscription, the consumer sequence it expects next, and when the
    server last showed it was alive."""

    room: str
    sub: Any = None
    consumer: str = ""
    next_dseq: int = 1
    alive_at: float = 0.0
    broken: bool = False


class NatsJetStream(NatsBroker):
    durable = True
    PUBLISH_DEADLINE = 30.0
    REQUEST_TIMEOUT = 1.0

    def __init__(self, url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(url, name=name)
        self.members: Counter[str] = Counter()
        #: room -> last stream sequence delivered to this replica's members
        self.positions: dict[str, int] = {}
        self.readers: dict[str, Reader] = {}
        #: room -> where its reading starts (the room's end when its first member joined)
        self.starting: dict[str, asyncio.Future[None]] = {}

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        self.js = self.nc.jetstream(timeout=self.REQUEST_TIMEOUT)
        await self._retry(self._add_stream, deadline=START_TIMEOUT)
        self.tasks.append(asyncio.create_task(self._watch()))

    async def _add_stream(self) -> None:
        from nats.js import api

        # Adding a stream that exists with the same configuration succeeds: every replica may do it.
        await self.js.add_stream(name=STREAM, subjects=["chat.>"], storage=api.StorageType.FILE,
                                 duplicate_window=120.0)

    async def _retry(self, call: Callable[[], Awaitable[Any]], *, deadline: float = 10.0) -> Any:
        """Retry a request through restarts, pauses and partitions, up to `deadline` seconds."""
        from nats.js.errors import NotFoundError

        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            try:
                result = await call()
                self.mark("jetstream", True)
                return result
            except NotFoundError:
                raise
            except Exception:  # noqa: BLE001 - timeouts, no responders, reconnecting: all transient here
                self.mark("jetstream", False)
                if loop.time() > end:
                    raise
                self.stats["nats_retries"] += 1
                await asyncio.sleep(0.1)

    async def end_id(self, room: str) -> tuple[str, int]:
        """The sid and sequence number of the room's newest message (("0-0", 0) for none)."""
        from nats.js.errors import NotFoundError

        try:
            last = await self._retry(lambda: self.js.get_last_msg(STREAM, subject(room)))
        except NotFoundError:
            return "0-0", 0
        return sid_of(last.seq), int(last.seq)

    async def join(self, room: str) -> None:
        """Read the room from its current end on: a client welcomed after this misses nothing."""
        self.members[room] += 1
        started = self.starting.get(room)
        if started is None or (started.done() and (started.cancelled() or started.exception() is not None)):
            started = self.starting[room] = asyncio.ensure_future(self._start_reading(room))
        await asyncio.shield(started)

    async def _start_reading(self, room: str) -> None:
        _, end = await self.end_id(room)
        if self.members[room] > 0:
            self.positions.setdefault(room, end)

    async def leave(self, room: str) -> None:
        self.members[room] -= 1
        if self.members[room] == 0:
            del self.members[room]
            self.starting.pop(room, None)
            self.positions.pop(room, None)
            reader = self.readers.pop(room, None)
            if reader is not None:
                await self._drop(reader)

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Store the frame once per message id; the ack names its place: {"sid", "seq"}, or nothing when the
        server says this id was already stored (a resend)."""
        payload = json.dumps(frame).encode()
        headers = {"Nats-Msg-Id": f"{room}:{frame['id']}"}
        try:
            ack = await self._retry(lambda: self.js.publish(subject(room), payload, timeout=self.REQUEST_TIMEOUT,
                                                            headers=headers), deadline=self.PUBLISH_DEADLINE)
        except Exception as exc:  # noqa: BLE001 - gave up after the deadline
            self.stats["publish_failed"] += 1
            raise PublishFailed(repr(exc)) from None
        if ack.duplicate:
            self.stats["publish_deduplicated"] += 1
            return {}
        self.stats["published"] += 1
        return {"sid": sid_of(ack.seq), "seq": int(ack.seq)}

    async def replay(self, room: str, after: str, after_seq: int) -> Replay:
        """The room's messages after sequence `after_seq`, up to its end when asked, one request each (the
        server's "next message on this subject at or after" lookup). The stream has no limits: nothing
        between is ever trimmed."""
        from nats.js.errors import NotFoundError

        _, end = await self.end_id(room)
        frames: list[str] = []
        seq = after_seq
        while seq < end:
            start = seq + 1
            try:
                msg = await self._retry(lambda: self.js.get_msg(STREAM, seq=start, subject=subject(room), next=True))  # noqa: B023
            except NotFoundError:
                break
            seq = int(msg.seq)
            frames.append(frame_of(msg.data, seq))
        self.stats["replayed"] += len(frames)
        return Replay(frames)

    # -- reading ---------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Keep one live consumer per local room: create the missing ones, replace the quiet or broken ones."""
        loop = asyncio.get_running_loop()
        while True:
            for room in list(self.positions):
                reader = self.readers.get(room)
                if reader is not None and not reader.broken and loop.time() - reader.alive_at < STALE:
                    continue
                if reader is not None:
                    self.stats["reader_resets"] += 1
                    log.warning("consumer for %s %s: starting a new one after sequence %d", room,
                                "broken" if reader.broken else f"quiet for {STALE}s", self.positions.get(room, 0))
                    self.mark("reader", False)
                    self.readers.pop(room, None)
                    await self._drop(reader)
                try:
                    await self._attach(room)
                except Exception as exc:  # noqa: BLE001 - the server is not answering: try again next round
                    self.mark("reader", False)
                    log.warning("could not start a consumer for %s: %r", room, exc)
            await asyncio.sleep(CHECK_EVERY)

    async def _attach(self, room: str) -> None:
        from nats.js import api

        if room not in self.positions:
            return
        reader = Reader(room, alive_at=asyncio.get_running_loop().time())
        inbox = self.nc.new_inbox()
        # Subscribe (and be the room's reader) before the consumer exists, so that its first messages have
        # somewhere to go.
        reader.sub = await self.nc.subscribe(inbox, cb=partial(self._on_message, reader))
        self.readers[room] = reader
        try:
            config = api.ConsumerConfig(
                deliver_subject=inbox, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.positions[room] + 1, filter_subject=subject(room),
                ack_policy=api.AckPolicy.NONE, max_deliver=1, flow_control=True, idle_heartbeat=HEARTBEAT,
                mem_storage=True, num_replicas=1, inactive_threshold=5.0)
            info = await self.js.add_consumer(STREAM, config=config, timeout=self.REQUEST_TIMEOUT)
        except BaseException:
            if self.readers.get(room) is reader:
                del self.readers[room]
            await self._unsubscribe(reader)
            raise
        reader.consumer = info.name
        reader.alive_at = asyncio.get_running_loop().time()
        if self.readers.get(room) is not reader:  # everyone left meanwhile
            await self._drop(reader)
            return
        self.mark("reader", True)

    async def _on_message(self, reader: Reader, msg: Any) -> None:
        if self.readers.get(reader.room) is not reader:
            return  # a replaced consumer's last messages: its successor delivers them
        reader.alive_at = asyncio.get_running_loop().time()
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "100":
            await self._control(reader, msg, headers)
            return
        if status is not None:
            reader.broken = True  # e.g. 409 consumer deleted
            return
        sseq, dseq = ack_sequences(msg.reply)
        if dseq != reader.next_dseq:
            # something between was dropped (never by the server for a healthy consumer): start again
            reader.broken = True
            self.stats["reader_gaps"] += 1
            return
        reader.next_dseq = dseq + 1
        room = reader.room
        if sseq <= self.positions.get(room, sseq):
            return
        self.positions[room] = sseq
        self.stats["received"] += 1
        self.deliver(room, frame_of(msg.data, sseq))

    async def _control(self, reader: Reader, msg: Any, headers: dict[str, str]) -> None:
        """An idle heartbeat or a flow-control request: answer flow control at once (messages are handled in
        order, so everything before it is done), and check the heartbeat's last consumer sequence."""
        stalled = headers.get("Nats-Consumer-Stalled")
        for reply in (msg.reply, stalled):
            if reply:
                try:
                    await self.nc.publish(reply, b"")
                except Exception:  # noqa: BLE001 - reconnecting: the watchdog will replace the consumer
                    pass
        last = headers.get("Nats-Last-Consumer")
        if last is not None and int(last) != reader.next_dseq - 1:
            reader.broken = True
            self.stats["reader_gaps"] += 1

    async def _drop(self, reader: Reader) -> None:
        """Stop a consumer: unsubscribe its inbox, and delete it on the server in the background (it also
        expires by itself after 5 s without interest)."""
        await self._unsubscribe(reader)
        if reader.consumer:
            task = asyncio.create_task(self._delete_consumer(reader.consumer))
            self.tasks.append(task)
            task.add_done_callback(lambda t: self.tasks.remove(t) if t in self.tasks else None)

    async def _unsubscribe(self, reader: Reader) -> None:
        try:
            await reader.sub.unsubscribe()
        except Exception:  # noqa: BLE001 - disconnected: the server dropped the interest anyway
            pass

    async def _delete_consumer(self, name: str) -> None:
        try:
            await self.js.delete_consumer(STREAM, name)
        except Exception:  # noqa: BLE001 - gone already, or the server is away: it expires by itself
            pass
