"""Core NATS broker: one subject per room, `chat.<room>`, at-most-once like Redis PubSub.

A replica subscribes to a room's subject while the room has a local member, and a client is welcomed only
after the server confirmed the subscription, so nothing published after the welcome misses this replica;
a publish is acknowledged once the server has it. Both wait for one round trip sent behind the SUB or PUB
on the same connection (the server handles a connection's commands in order): a request to a subject
nobody serves, which the server answers at once with "no responders" (`sync`). nats-py's `flush()` would
not do: it writes its PING straight to the socket, ahead of commands still in its buffer, and a PONG that
arrives after `flush(timeout)` gave up breaks the connection (it resolves the cancelled future).

nats-py reconnects by itself and subscribes again to every subject; publishing is not buffered while it
reconnects (`pending_size=0`): a publish then fails at once and the sender gets a nack. Whatever is
published while a replica's connection is down is gone for that replica's clients.

A replica that stops reading (frozen, or too slow) is a slow consumer: the server closes its connection
when a write to it blocks longer than its `write_deadline` or more than `max_pending` bytes wait for it
(the harness starts the server with a 1 s write deadline for the slow-consumer fault), and nats-py reconnects
when the replica reads again.

Room names are subject tokens as they are: the server and the harness accept [A-Za-z0-9_-] only, which
has no '.', '*', '>' or whitespace (the characters that would split or widen a subject).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from .brokers import Deliver, NoBroker, PublishFailed

log = logging.getLogger("wslab.nats")

#: how long a replica waits for the server at start, and for a server's answer to one round trip
START_TIMEOUT = 30.0
ROUND_TRIP_TIMEOUT = 1.0


def subject(room: str) -> str:
    return f"chat.{room}"


def room_of(subject_name: str) -> str:
    return subject_name.split(".", 1)[1]


class NatsBroker(NoBroker):
    """Common to the NATS brokers: one connection that reconnects forever and says when it broke."""

    def __init__(self, url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(url, name=name)
        self.url = url
        self.tasks: list[asyncio.Task[None]] = []
        self.logged: set[str] = set()
        #: a subject nobody subscribes to: a request to it is answered at once by the server
        self.probe = f"_wslab.probe.{name or id(self)}"

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.nc = await self._connect()

    async def _connect(self) -> Any:
        """The server may start after this replica: retry the first connection for START_TIMEOUT seconds."""
        import nats

        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            try:
                return await nats.connect(
                    self.url, name=self.name or None, connect_timeout=1, reconnect_time_wait=0.1,
                    max_reconnect_attempts=-1, allow_reconnect=True,
                    # a silent connection (partitioned, or a frozen server) is declared dead after 3 missed
                    # pings: longer than the 2 s a paused server stays frozen in the fault scenarios
                    ping_interval=1, max_outstanding_pings=3, pending_size=0,
                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                    error_cb=self._error)
            except Exception:  # noqa: BLE001 - nats-py raises several kinds while the server is not up
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _disconnected(self) -> None:
        self.logged.clear()
        self.stats["disconnects"] += 1
        self.mark("connection", False)
        log.warning("disconnected from the NATS server")

    async def _reconnected(self) -> None:
        self.stats["reconnects"] += 1
        self.mark("connection", True)
        log.warning("reconnected to the NATS server")

    async def _error(self, exc: Exception) -> None:
        kind = type(exc).__name__
        self.stats[f"error_{kind}"] += 1
        if kind not in self.logged:  # once per disconnection: reconnecting fails every 0.1 s meanwhile
            self.logged.add(kind)
            log.warning("nats: %r", exc)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.nc.close(), 2.0)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass

    async def healthy(self) -> bool:
        try:
            await self.sync()
        except Exception:  # noqa: BLE001
            return False
        return True

    async def sync(self) -> None:
        """Return once the server has handled everything this connection sent before (see the module's
        docstring); raise when it is not connected or did not answer within ROUND_TRIP_TIMEOUT."""
        from nats.errors import NoRespondersError

        try:
            await self.nc.request(self.probe, b"", timeout=ROUND_TRIP_TIMEOUT)
        except NoRespondersError:
            return

    async def sync_within(self, deadline: float) -> None:
        """`sync`, retried through a reconnection for up to `deadline` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            try:
                await self.sync()
                return
            except Exception:  # noqa: BLE001 - disconnected, reconnecting, or no answer in time
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.05)


class NatsCore(NatsBroker):
    """Core NATS publish/subscribe, one subject per room; see the module's docstring."""

    #: how long a join waits for the server to confirm the room's subscription
    JOIN_DEADLINE = 10.0

    def __init__(self, url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(url, name=name)
        self.members: Counter[str] = Counter()
        self.subs: dict[str, Any] = {}
        self.confirmed: dict[str, asyncio.Future[None]] = {}

    async def join(self, room: str) -> None:
        self.members[room] += 1
        if self.members[room] == 1:
            self.confirmed[room] = asyncio.ensure_future(self._subscribe(room))
        await asyncio.shield(self.confirmed[room])

    async def _subscribe(self, room: str) -> None:
        self.subs[room] = await self.nc.subscribe(subject(room), cb=self._on_message)
        # nats-py sends the SUB again by itself after a reconnection; this only waits for the first one
        await self.sync_within(self.JOIN_DEADLINE)

    async def leave(self, room: str) -> None:
        self.members[room] -= 1
        if self.members[room] == 0:
            del self.members[room]
            confirmed = self.confirmed.pop(room, None)
            if confirmed is not None and not confirmed.done():
                await asyncio.gather(confirmed, return_exceptions=True)
            sub = self.subs.pop(room, None)
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001 - the connection is down: the server dropped it anyway
                    pass

    async def _on_message(self, msg: Any) -> None:
        self.stats["received"] += 1
        self.deliver(room_of(msg.subject), msg.data.decode())

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Publish once (no retry: a retried PUB the server already had would be delivered twice); ack when
        the server confirmed it, nack when the connection is down or the server did not answer in time."""
        try:
            await self.nc.publish(subject(room), json.dumps(frame).encode())
            await self.sync()
        except Exception as exc:  # noqa: BLE001 - disconnected (no buffering), or no answer in time
            self.stats["publish_failed"] += 1
            self.mark("publisher", False)
            raise PublishFailed(repr(exc)) from None
        self.stats["published"] += 1
        self.mark("publisher", True)
        return {}
