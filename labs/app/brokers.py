"""How a replica hands a room message to the other replicas.

A broker calls `deliver(room, frame)` for every frame that must reach this replica's local room members;
the server does the local fan-out. Each broker delivers a frame to a replica once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Awaitable, Callable

Deliver = Callable[[str, str], None]
log = logging.getLogger("wslab.broker")


class NoBroker:
    """In-memory only: a message reaches the clients of the replica it was sent to, and no others."""

    def __init__(self, redis_url: str) -> None:
        self.deliver: Deliver = lambda room, frame: None
        self.stats: Counter[str] = Counter()

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def stop(self) -> None:
        pass

    async def join(self, room: str) -> None:
        pass

    async def leave(self, room: str) -> None:
        pass

    async def publish(self, room: str, frame: str) -> None:
        self.deliver(room, frame)

    async def healthy(self) -> bool:
        return True


class RedisPubSub(NoBroker):
    """One Redis channel per room, `chat:<room>`, subscribed while the room has a local member.

    A client is told it joined only after Redis confirmed the subscription, so no message published after
    the welcome can miss this replica. PubSub is at-most-once: what is published while a replica is not
    subscribed is gone.
    """

    def __init__(self, redis_url: str) -> None:
        super().__init__(redis_url)
        self.url = redis_url
        self.members: Counter[str] = Counter()
        self.confirmed: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        import redis.asyncio as redis

        self.deliver = deliver
        self.redis = redis.Redis.from_url(self.url)
        self.pubsub = self.redis.pubsub()
        await self._await_redis()
        # A control channel keeps the subscriber connection open while no room is subscribed.
        await self._subscribe("wslab:control")
        self.tasks.append(asyncio.create_task(self._listen()))
        await self.confirmed["wslab:control"].wait()

    async def _await_redis(self, timeout: float = 30.0) -> None:
        """Redis may start after this replica: retry until it answers, for `timeout` seconds."""
        import redis.exceptions

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.redis.ping()
                return
            except (redis.exceptions.ConnectionError, OSError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()

    def channel(self, room: str) -> str:
        return f"chat:{room}"

    async def _subscribe(self, channel: str) -> None:
        self.confirmed[channel] = asyncio.Event()
        await self.pubsub.subscribe(channel)

    async def join(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] += 1
        if self.members[channel] == 1:
            await self._subscribe(channel)
        await self.confirmed[channel].wait()

    async def leave(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] -= 1
        if self.members[channel] == 0:
            del self.members[channel]
            self.confirmed.pop(channel, None)
            await self.pubsub.unsubscribe(channel)

    async def publish(self, room: str, frame: str) -> None:
        receivers = await self.redis.publish(self.channel(room), frame)
        self.stats["published"] += 1
        if receivers == 0:
            self.stats["published_to_nobody"] += 1

    async def _listen(self) -> None:
        async for message in self.pubsub.listen():
            kind, channel = message["type"], message["channel"].decode()
            if kind == "subscribe":
                if channel in self.confirmed:
                    self.confirmed[channel].set()
            elif kind == "message" and channel.startswith("chat:"):
                self.stats["received"] += 1
                self.deliver(channel.split(":", 1)[1], message["data"].decode())

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.redis.ping(), 1.0)
        except Exception:
            return False
        return True


class SeedSubscribeGlob(RedisPubSub):
    """The seed article's code: `subscribe('chat:*')` is a literal channel name, not a pattern.

    It publishes to `chat:<room>` and listens on the channel literally named `chat:*`, so nothing is ever
    delivered, not even to clients on the sender's own replica. `PSUBSCRIBE` would have matched.
    """

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        await self._subscribe("chat:*")
        await self.confirmed["chat:*"].wait()

    async def join(self, room: str) -> None:
        pass

    async def leave(self, room: str) -> None:
        pass


BROKERS: dict[str, Callable[[str], NoBroker]] = {
    "none": NoBroker,
    "redis-pubsub": RedisPubSub,
    "seed-subscribe-glob": SeedSubscribeGlob,
}
