"""How a replica hands a room message to the other replicas.

A broker calls `deliver(room, frame)` for every frame that must reach this replica's local room members;
the server does the local fan-out. `publish` returns once the broker has the message (the server then acks
it to the sender, adding the fields it returned) and raises `PublishFailed` when it gave up on it.

A `durable` broker also keeps what was published: `end_id` says where a room's history ends, `replay` gives
what a client missed after a point, and `on_gap` is called when entries were dropped before this replica
read them. The server uses these capabilities and never names a broker class.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import codec

Deliver = Callable[[str, str], None]
#: deliver_from(room, sender, frame): a frame's JSON bytes and its sender, as a broker that names the sender
#: beside the frame carries them (no decode)
DeliverFrom = Callable[[str, str, bytes], None]
#: on_gap(room, lo, hi): entries numbered lo..hi (inclusive) of `room` were trimmed before this replica read them
Gap = Callable[[str, int, int], None]
log = logging.getLogger("wslab.broker")
CONTROL = "wslab:control"


class PublishFailed(Exception):
    pass


@dataclass(frozen=True)
class Replay:
    """What a resuming client missed: the frames still there, in order, and the inclusive range of sequence
    numbers that were trimmed before it could be replayed (None when nothing was)."""

    frames: list[str]
    trimmed: tuple[int, int] | None = None

    @property
    def trimmed_count(self) -> int:
        return 0 if self.trimmed is None else self.trimmed[1] - self.trimmed[0] + 1


class NoBroker:
    """In-memory only: a message reaches the clients of the replica it was sent to, and no others."""

    #: keeps what was published, so that `end_id` and `replay` mean something
    durable = False

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        self.name = name
        self.deliver: Deliver = lambda room, frame: None
        self.on_gap: Gap = lambda room, lo, hi: None
        self.deliver_from: DeliverFrom = lambda room, sender, frame: self.deliver(room, frame.decode())
        self.stats: Counter[str] = Counter()
        #: (CLOCK_MONOTONIC time, part, working) at each change: when a part broke and when it recovered.
        #: Containers share the host's monotonic clock, so the harness can place these in its own history.
        self.events: list[tuple[float, str, bool]] = []
        self._working: dict[str, bool] = {}

    def mark(self, part: str, working: bool) -> None:
        if self._working.get(part, True) != working:
            self._working[part] = working
            self.events.append((time.monotonic(), part, working))

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def stop(self) -> None:
        pass

    async def join(self, room: str) -> None:
        pass

    async def leave(self, room: str) -> None:
        pass

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Hand `frame` to the room; return the fields to add to the sender's ack."""
        self.deliver(room, codec.dumps(frame).decode())
        return {}

    async def end_id(self, room: str) -> tuple[str, int]:
        """The id and sequence number of the room's newest entry: nothing is kept here."""
        return "0-0", 0

    async def replay(self, room: str, after: str, after_seq: int) -> Replay:
        """What `room` received after id `after` (numbered `after_seq`): nothing is kept here."""
        return Replay([])

    async def healthy(self) -> bool:
        return True


class RedisBroker(NoBroker):
    """Common to the Redis brokers: a command client with short timeouts that waits for Redis at start."""

    #: with a number: at most that many command connections, and a command waits (up to 5 s) for a free one
    #: instead of failing with "Too many connections" (redis-py's pool stops at 100)
    blocking_pool: int | None = None
    #: socket and connect timeout of every connection, seconds
    timeout = 1.0

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(redis_url, name=name)
        self.url = redis_url
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        import redis.asyncio as redis

        self.deliver = deliver
        # Every connection (the subscriber's too) names this replica in CLIENT LIST: the harness finds a deaf
        # replica by the subscribers it does not see there.
        options: dict[str, Any] = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
                                   "client_name": self.name or None}
        if self.blocking_pool is None:
            self.redis = redis.Redis.from_url(self.url, **options)
        else:
            pool = redis.BlockingConnectionPool.from_url(self.url, max_connections=self.blocking_pool, timeout=5.0,
                                                         **options)
            self.redis = redis.Redis(connection_pool=pool)
        await self._await_redis()

    async def _await_redis(self, timeout: float = 30.0) -> None:
        """Redis may start after this replica: retry until it answers, for `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.redis.ping()
                return
            except (ConnectionError, OSError, TimeoutError) + _redis_errors():
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.redis.aclose()

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.redis.ping(), 1.0)
        except Exception:
            return False
        return True


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class PublishBatch:
    """PUBLISHes that arrive while one batch is at Redis go together in the next, one pipeline: one write
    and one read for many messages instead of one round trip each. Alone, a publish goes at once. A failed
    batch fails every publish in it (each caller decides whether to try again)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.waiting: list[tuple[str, str | bytes, asyncio.Future[int]]] = []
        self.sending = False

    async def publish(self, channel: str, payload: str | bytes) -> int:
        """PUBLISH `payload` to `channel` in the next batch; return how many subscribers received it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((channel, payload, future))
        if not self.sending:
            self.sending = True
            asyncio.get_running_loop().create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                pipe = self.redis.pipeline(transaction=False)
                for channel, payload, _ in batch:
                    pipe.publish(channel, payload)
                try:
                    replies = await pipe.execute()
                except BaseException as exc:  # noqa: BLE001 - every caller gets the failure
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, _, future), receivers in zip(batch, replies):
                    if not future.done():
                        future.set_result(int(receivers))
        finally:
            self.sending = False


class RedisPubSub(RedisBroker):
    """One Redis channel per room, `chat:<room>`, subscribed while the room has a local member.

    A client is told it joined only after Redis confirmed the subscription, so no message published after
    the welcome can miss this replica. PubSub is at-most-once: what is published while a replica is not
    subscribed is gone, and a publish that fails is retried once, then dropped (as Socket.IO's Redis
    manager does). A heartbeat through Redis to this replica's own control channel detects a "deaf"
    subscriber (its connection silently dead) and rebuilds it.
    """

    HEARTBEAT = 0.25
    DEAF_AFTER = 1.5
    #: the subscriber: "redis-py" (its PubSub object), or "raw" (rawpubsub.RawSubscriber, the sender carried
    #: before each frame: `<sender> <frame JSON>`); every replica of a stack must use the same one
    reader = "redis-py"
    #: PUBLISH's reply counts every subscriber (one Redis); in a Redis Cluster it counts only the node's own
    counts_every_subscriber = True

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(redis_url, name=name)
        self.members: Counter[str] = Counter()
        self.confirmed: dict[str, asyncio.Event] = {}
        self.heard = 0.0
        self.subscribed_once = False
        #: redis-py's PubSub, or a RawSubscriber: rebuilt by the listener
        self.pubsub: Any = None

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        self.batch = PublishBatch(self.redis)
        self.control = f"{CONTROL}:{id(self):x}"
        self.confirmed[self.control] = asyncio.Event()
        self.listener = asyncio.create_task(self._listen())
        await self.confirmed[self.control].wait()
        self.tasks.append(asyncio.create_task(self._heartbeat()))

    async def stop(self) -> None:
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await super().stop()

    def channel(self, room: str) -> str:
        return f"chat:{room}"

    async def join(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] += 1
        if self.members[channel] == 1:
            self.confirmed[channel] = asyncio.Event()
            await self._send_subscribe(channel)
        await self.confirmed[channel].wait()

    async def leave(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] -= 1
        if self.members[channel] == 0:
            del self.members[channel]
            self.confirmed.pop(channel, None)
            try:
                await self.pubsub.unsubscribe(channel)
            except _redis_errors() + (OSError,):
                pass  # the connection is being rebuilt; the rebuild subscribes only to current rooms

    async def _send_subscribe(self, channel: str) -> None:
        try:
            await self.pubsub.subscribe(channel)
        except _redis_errors() + (OSError,):
            pass  # the listener rebuilds the connection and subscribes to every channel in `confirmed`

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        payload = codec.dumps(frame)
        if self.reader == "raw":  # the sender rides before the frame, so no replica has to decode it
            payload = frame["sender"].encode() + b" " + payload
        for attempt in (1, 2):
            try:
                receivers = await self.batch.publish(self.channel(room), payload)
                break
            except _redis_errors() + (OSError,) as exc:
                self.mark("publisher", False)
                if attempt == 2:
                    self.stats["publish_failed"] += 1
                    log.warning("publish of %s failed twice, giving up: %s", frame["id"], exc)
                    raise PublishFailed(str(exc)) from None
        self.stats["published"] += 1
        if receivers == 0 and self.counts_every_subscriber:
            self.stats["published_to_nobody"] += 1
        self.mark("publisher", True)
        return {}

    async def _listen(self) -> None:
        """Read the subscriber connection; on any failure, rebuild it and subscribe to everything again."""
        while True:
            try:
                if self.reader == "raw":
                    from .rawpubsub import RawSubscriber  # needs hiredis, which only the image has

                    self.pubsub = await RawSubscriber.connect(self.url, self.name, self.timeout, self._raw_message,
                                                              self._raw_subscribed)
                else:
                    self.pubsub = self.redis.pubsub()
                await self.pubsub.subscribe(*self.confirmed)
                if self.subscribed_once:
                    self.stats["subscriber_rebuilds"] += 1
                    log.warning("subscriber rebuilt; subscribed again to %d channel(s)", len(self.confirmed))
                self.subscribed_once = True
                self.heard = asyncio.get_running_loop().time()
                if self.reader == "raw":
                    await self.pubsub.closed  # the protocol delivers; this returns only when it is closed
                    raise ConnectionError("the subscriber connection was closed")
                async for message in self.pubsub.listen():
                    self._handle(message)
            except asyncio.CancelledError:
                await self._close_pubsub()
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: rebuild the subscriber
                self.mark("subscriber", False)
                log.warning("subscriber connection lost: %r", exc)
            await self._close_pubsub()
            await asyncio.sleep(0.05)

    async def _close_pubsub(self) -> None:
        try:
            await asyncio.wait_for(self.pubsub.aclose(), 1.0)
        except Exception:  # noqa: BLE001
            pass

    def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"].decode()
        if kind == "subscribe":
            self._subscribed(channel)
        elif kind == "message":
            self._heard()
            if channel.startswith("chat:"):
                self.stats["received"] += 1
                self.deliver(channel.split(":", 1)[1], message["data"].decode())

    def _subscribed(self, channel: str) -> None:
        if channel in self.confirmed:
            self.confirmed[channel].set()
        if channel == self.control:
            self.mark("subscriber", True)

    def _heard(self) -> None:
        # Any message counts as heard: a subscriber working through a backlog (a replica starved of CPU reads
        # its beat late, behind the rooms' messages) is behind, not deaf; rebuilding it would drop what is in
        # flight. A deaf subscriber hears nothing at all.
        self.heard = asyncio.get_running_loop().time()
        self.mark("subscriber", True)

    def _raw_subscribed(self, channel: bytes) -> None:
        self._subscribed(channel.decode())

    def _raw_message(self, channel: bytes, data: bytes) -> None:
        """A message as the raw reader hands it: `<sender> <frame JSON>` on `chat:<room>`, forwarded undecoded."""
        self._heard()
        if channel.startswith(b"chat:"):
            self.stats["received"] += 1
            sender, _, frame = data.partition(b" ")
            self.deliver_from(channel[5:].decode(), sender.decode(), frame)

    async def _heartbeat(self) -> None:
        """Publish to our own control channel; rebuild the subscriber when it is deaf.

        Deaf means Redis works (the publish succeeded) but our subscriber is not there: either Redis says
        the beat reached nobody, or beats published successfully for DEAF_AFTER seconds while the
        subscriber heard nothing at all, neither a beat nor a room's message (a half-open connection).
        While publishes fail, Redis is out of reach, and a subscriber hears nothing from a Redis it cannot
        reach: it counts as broken until it hears again or a rebuild subscribes again. After a partition
        heals, its old connection may stay silent for seconds (TCP retransmits back off: 0.2, 0.4, 0.8,
        1.6, 3.2 s...), and what a rebuild then drops is the partition's loss, not a loss of its own.
        """
        loop = asyncio.get_running_loop()
        unheard_since: float | None = None
        while True:
            await asyncio.sleep(self.HEARTBEAT)
            try:
                receivers = await self.redis.publish(self.control, "beat")
            except Exception:  # noqa: BLE001 - Redis unreachable: nothing to judge, nothing heard
                unheard_since = None
                self.mark("subscriber", False)
                continue
            now = loop.time()
            if unheard_since is None or self.heard >= unheard_since:
                unheard_since = now
            if receivers == 0 or now - unheard_since > self.DEAF_AFTER:
                self.stats["deaf_detected"] += 1
                self.mark("subscriber", False)
                log.warning("subscriber deaf (beat reached %d subscriber(s), unheard for %.1fs): rebuilding",
                            receivers, now - unheard_since)
                unheard_since = None
                self.heard = now
                self.listener.cancel()
                await asyncio.gather(self.listener, return_exceptions=True)
                self.listener = asyncio.create_task(self._listen())


class SeedSubscribeGlob(RedisPubSub):
    """The seed article's code: `subscribe('chat:*')` is a literal channel name, not a pattern.

    It publishes to `chat:<room>` and listens on the channel literally named `chat:*`, so nothing is ever
    delivered, not even to clients on the sender's own replica. `PSUBSCRIBE` would have matched.
    """

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        self.confirmed["chat:*"] = asyncio.Event()
        await self._send_subscribe("chat:*")
        await self.confirmed["chat:*"].wait()

    async def join(self, room: str) -> None:
        pass

    async def leave(self, room: str) -> None:
        pass

