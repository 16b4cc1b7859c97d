"""A Socket.IO client's link (python-socketio AsyncClient over aiohttp), recording every HTTP exchange.

Each client keeps one aiohttp session across reconnects, so it has its own cookie jar (cookie stickiness
works as in a browser; the jar accepts cookies from 127.0.0.1) and, when it stands for another network, its
own X-Forwarded-For on every request (Engine.IO sends custom headers on the handshake only). A trace on
that session records each response's status, and the body of every error, so an HTTP 400 "unknown
session" is kept with the client that got it. Reconnection is the workload's, not python-socketio's: a
new AsyncClient per connection, on the same session.

Connection state recovery is socket.io-client's (protocols/recovery.py): once a server's CONNECT answer
carried a private session id, every later CONNECT sends it back with the offset of the last event received;
each connection is recorded as a `Rejoin` (what its CONNECT carried, whether the answer said recovered, the
events that came before the answer: the replay). A server without recovery sends no session id, and nothing
changes.

Event shapes: `lab` (join-room {room, client}; chat-message {id, ts} acknowledged by the server) or the
seed article's (join-room roomId; chat-message roomId, message; `new-message` goes to the whole room,
the sender included, so the sender's own copy is its acknowledgement).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import aiohttp
import socketio
import socketio.exceptions
from yarl import URL

from ..accounting.recovery import Rejoin
from ..scenario import Events, Transport
from .base import JoinFailed, Link, LinkDown, Sink
from .recovery import RecoveryState

TRANSPORTS: dict[Transport, list[str] | None] = {
    Transport.POLLING: ["polling"], Transport.WEBSOCKET: ["websocket"], Transport.DEFAULT: None,
}
DETAIL_CHARS = 200
#: how Engine.IO servers word a poll for a session they do not hold: python-engineio, then Node's engine.io
UNKNOWN_SESSION_MARKERS = ("Invalid session", "Session ID unknown")


@dataclass(frozen=True)
class HttpEvent:
    """One HTTP request a client made through nginx, and what came back.

    kind: `handshake` (Engine.IO open, no session id yet), `poll` (GET with the session id), `send` (POST
    with it), `websocket` (a WebSocket connection or upgrade). status None: no response at all.
    """

    client: str
    at: float
    method: str
    kind: str
    status: int | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and (200 <= self.status < 300 or self.status == 101)

    @property
    def session_unknown(self) -> bool:
        """HTTP 400 because the server that got the request never saw this session (no stickiness)."""
        return self.status == 400 and any(m in self.detail for m in UNKNOWN_SESSION_MARKERS)

    @property
    def polling(self) -> bool:
        return self.kind in {"handshake", "poll", "send"}


def request_kind(method: str, url: URL) -> str:
    if url.query.get("transport") == "websocket":
        return "websocket"
    if "sid" not in url.query:
        return "handshake"
    return "send" if method == "POST" else "poll"


class _AsyncClient(socketio.AsyncClient):
    """AsyncClient that also says when its Engine.IO transport closed, even before any namespace connected
    (python-socketio reports a disconnect only for a connected namespace), and shows the link every CONNECT
    answer and EVENT packet's data before handling it (recovery's session id and offsets)."""

    def __init__(self, *args: Any, on_transport_closed: Callable[[], None], on_connect_packet: Callable[[Any], None],
                 on_event_packet: Callable[[Any], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_transport_closed = on_transport_closed
        self._on_connect_packet = on_connect_packet
        self._on_event_packet = on_event_packet

    async def _handle_eio_disconnect(self, *args: Any) -> None:
        await super()._handle_eio_disconnect(*args)
        self._on_transport_closed()

    async def _handle_connect(self, namespace: str | None, data: Any) -> None:
        if (namespace or "/") not in self.namespaces:
            self._on_connect_packet(data)
        await super()._handle_connect(namespace, data)

    async def _handle_event(self, namespace: str | None, id: int | None, data: Any) -> None:
        if isinstance(data, list):
            self._on_event_packet(data)
        await super()._handle_event(namespace, id, data)


class SocketIOLink(Link):
    def __init__(self, name: str, *, host: str = "127.0.0.1", port: int, room: str, transport: Transport, events: Events, source: str,
                 sink: Sink, http_log: list[HttpEvent], rejoins: list[Rejoin] | None = None) -> None:
        self.name, self.room, self.events, self.source, self.sink = name, room, events, source, sink
        self.url = f"http://{host}:{port}"
        self.transports = TRANSPORTS[transport]
        self.http_log = http_log
        self.recording = True
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), trace_configs=[self._trace()],
            headers={"X-Forwarded-For": source} if source else None)
        self.sio: _AsyncClient | None = None
        self.closed = asyncio.Event()
        self.recovery = RecoveryState()
        self.rejoins = rejoins if rejoins is not None else []

    def _trace(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_end(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            if not self.recording:
                return
            status, detail = params.response.status, ""
            if not (200 <= status < 300 or status == 101):
                try:  # the body is cached: Engine.IO can still read it
                    detail = (await params.response.read()).decode(errors="replace").strip()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    detail = f"(body unreadable: {exc!r})"
            self.http_log.append(HttpEvent(self.name, time.monotonic(), params.method,
                                           request_kind(params.method, params.url), status,
                                           detail[:DETAIL_CHARS]))

        async def on_error(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestExceptionParams) -> None:
            if self.recording:  # else: the harness closed the session under a pending long poll
                self.http_log.append(HttpEvent(self.name, time.monotonic(), params.method,
                                               request_kind(params.method, params.url), None,
                                               repr(params.exception)[:DETAIL_CHARS]))

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace

    async def open(self, timeout: float) -> str:
        await self._dispose(grace=0.2)
        closed = self.closed = asyncio.Event()
        joined: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        self.recovery.opening()
        auth = self.recovery.connect_auth()
        sent = (bool(auth and "pid" in auth), bool(auth and "offset" in auth))
        offset = auth.get("offset") if auth else None
        replayed: list[str] = []
        answered: list[Rejoin] = []

        def on_connect_packet(data: Any) -> None:
            recovered = self.recovery.on_connect(data)
            answered.append(Rejoin(self.name, started, time.monotonic(), *sent, recovered, tuple(replayed), offset))
            self.rejoins.append(answered[0])

        def on_event_packet(data: list[Any]) -> None:
            if not self.recovery.connected and len(data) > 1 and isinstance(data[1], dict) and "id" in data[1]:
                replayed.append(str(data[1]["id"]))
            self.recovery.on_event(data)

        sio = _AsyncClient(http_session=self.http, handle_sigint=False, reconnection=False,
                           on_transport_closed=closed.set, on_connect_packet=on_connect_packet,
                           on_event_packet=on_event_packet)

        def on_join_ack(ack: Any = None) -> None:
            if joined.done():
                return
            if isinstance(ack, dict) and "replica" in ack:
                joined.set_result(str(ack["replica"]))
            else:
                joined.set_exception(JoinFailed(f"join-room refused: {ack!r}"[:DETAIL_CHARS]))

        async def on_connect() -> None:
            if self.events is Events.ARTICLE:
                await sio.emit("join-room", self.room, callback=on_join_ack)
            else:
                await sio.emit("join-room", {"room": self.room, "client": self.name}, callback=on_join_ack)

        sio.on("connect", on_connect)
        sio.on("disconnect", lambda *reason: closed.set())
        sio.on("new-message", self._on_message)
        self.sio = sio
        try:
            await sio.connect(self.url, transports=self.transports, wait=False, auth=auth)
        except (socketio.exceptions.ConnectionError, ValueError) as exc:
            self.rejoins.append(Rejoin(self.name, started, time.monotonic(), *sent, None, (), offset))
            raise JoinFailed(f"connect failed: {exc}") from None
        waiter: asyncio.Future[Any] = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait([joined, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if joined.done() and not closed.is_set():
            return joined.result()
        if not joined.done():
            joined.cancel()
        if not answered:
            self.rejoins.append(Rejoin(self.name, started, time.monotonic(), *sent, None, tuple(replayed), offset))
        failed = [e for e in self.http_log if e.client == self.name and not e.ok]
        why = f"{failed[-1].status} {failed[-1].detail}" if failed else f"not in the room after {timeout:g}s"
        await self._dispose(grace=0.0)
        raise JoinFailed(f"transport closed before joining: {why}"[:DETAIL_CHARS])

    def _on_message(self, message: Any = None, *rest: Any) -> None:
        if not isinstance(message, dict) or "id" not in message:
            return
        msg_id = str(message["id"])
        if self.events is Events.ARTICLE and message.get("sender") == self.name:
            self.sink.on_ack(msg_id, "", None)  # the article's server relays to the sender too
            return
        self.sink.on_message(msg_id, str(message.get("origin", "")), None)

    def _acked(self, msg_id: str, ack: Any = None) -> None:
        if isinstance(ack, dict) and "error" not in ack:
            self.sink.on_ack(msg_id, str(ack.get("replica", "")), None)
        else:
            self.sink.on_nack(msg_id)

    async def send(self, msg_id: str, ts: float, body: str) -> None:
        sio = self.sio
        if sio is None or self.closed.is_set():
            raise LinkDown(self.name)
        try:
            if self.events is Events.ARTICLE:
                await sio.emit("chat-message", (self.room, {"id": msg_id, "ts": ts, "sender": self.name}))
            else:
                await sio.emit("chat-message", {"id": msg_id, "ts": ts}, callback=partial(self._acked, msg_id))
        except socketio.exceptions.BadNamespaceError:  # dropped between the check and the emit
            raise LinkDown(self.name) from None

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def drop_transport(self) -> None:
        """Engine.IO's close, as socket.io-client's `socket.io.engine.close()`: the server sees its transport
        close ("transport close", a reason recovery keeps the session for), not a Socket.IO DISCONNECT."""
        sio = self.sio
        if sio is not None and not self.closed.is_set():
            await sio.eio.disconnect(abort=True)

    async def _dispose(self, *, grace: float) -> None:
        """Shut the current AsyncClient down. Over polling, shutdown() waits for its pending long poll,
        which the server holds for ~30 s after a close packet: give it `grace` s, then move on."""
        sio, self.sio = self.sio, None
        if sio is None:
            return
        shutdown = asyncio.ensure_future(sio.shutdown())
        done, _ = await asyncio.wait({shutdown}, timeout=grace) if grace else (set(), None)
        if not done:
            shutdown.cancel()
            await asyncio.gather(shutdown, return_exceptions=True)

    async def close(self, *, grace: float) -> None:
        """End for good: the close packet gets `grace` s to go out, then the HTTP session is closed, which
        also ends a long poll the server still holds."""
        sio, self.sio = self.sio, None
        shutdown = asyncio.ensure_future(sio.shutdown()) if sio is not None else None
        try:
            if shutdown is not None and grace:
                await asyncio.wait({shutdown}, timeout=grace)
        finally:
            self.recording = False
            await self.http.close()
            if shutdown is not None:
                await asyncio.wait({shutdown}, timeout=1.0)
                shutdown.cancel()
                await asyncio.gather(shutdown, return_exceptions=True)
