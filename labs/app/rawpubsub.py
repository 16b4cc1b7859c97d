"""A Redis Pub/Sub subscriber on a bare asyncio Protocol and hiredis's reply reader (`--reader raw`).

redis-py's PubSub hands each message through its connection's stream reader, an async generator, a dict per
message and a task switch; here the bytes Redis sends are fed to hiredis in `data_received`, and each
message goes to its callback right there, as bytes: no task, no dict, no decode. It speaks RESP2 and only
what a subscriber needs: CLIENT SETNAME (the harness finds a deaf replica by the names in CLIENT LIST),
SUBSCRIBE and UNSUBSCRIBE. A lost connection sets `closed`; the caller builds a new subscriber.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis

#: on_message(channel, data) for each message; on_subscribe(channel) when Redis confirms a subscription
OnMessage = Callable[[bytes, bytes], None]
OnSubscribe = Callable[[bytes], None]


def address(url: str) -> tuple[str, int]:
    """redis://host:port/db -> (host, port); the db does not matter to Pub/Sub."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 6379


class RawSubscriber(asyncio.Protocol):
    def __init__(self, on_message: OnMessage, on_subscribe: OnSubscribe) -> None:
        self.on_message, self.on_subscribe = on_message, on_subscribe
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, url: str, name: str, timeout: float, on_message: OnMessage,
                      on_subscribe: OnSubscribe) -> RawSubscriber:
        host, port = address(url)
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_message, on_subscribe), host, port), timeout)
        if name:
            protocol.send(b"CLIENT", b"SETNAME", name.encode())
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is a Transport, not its subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc or ConnectionError("redis closed the subscriber connection"))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self._reply(reply)

    def _reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self.on_message(reply[1], reply[2])
            elif kind == b"subscribe":
                self.on_subscribe(reply[1])
        elif isinstance(reply, hiredis.ReplyError):
            self.abort(ConnectionError(f"redis refused a subscriber command: {reply}"))

    def send(self, *args: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the subscriber connection is closed")
        self.transport.write(hiredis.pack_command(args))

    async def subscribe(self, *channels: str) -> None:
        if channels:
            self.send(b"SUBSCRIBE", *(c.encode() for c in channels))

    async def unsubscribe(self, channel: str) -> None:
        self.send(b"UNSUBSCRIBE", channel.encode())

    def abort(self, exc: Exception) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def aclose(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.closed.done():
            self.closed.set_result(None)
