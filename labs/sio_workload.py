"""Scripted Socket.IO clients on the host (python-socketio AsyncClient): connect through nginx with one
transport, join a room, send, drain, and record every HTTP exchange on the way.

Each client has its own aiohttp session, so it has its own cookie jar (cookie stickiness works as in a
browser; the jar accepts cookies from 127.0.0.1) and, when it stands for another network, its own
X-Forwarded-For on every request (Engine.IO sends custom headers on the handshake only). A trace on that
session records each response's status — and the body of every error, so an HTTP 400 "unknown session"
is kept with the client that got it.

Clients join one at a time, so round-robin placement is exact and a failing client's requests are over
before the next one starts. Times are the host's monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import aiohttp
import engineio.payload
import socketio
import socketio.exceptions
from yarl import URL

from .history import FaultEvent, Received, Sent, Session
from .scenario import Scenario, Transport
from .sio_history import Ack, ClientRecord, Drop, HttpEvent, SioHistory

Progress = Callable[[str], None]
During = Callable[[float], Awaitable[list[FaultEvent]]]
TRANSPORTS: dict[Transport, list[str] | None] = {
    Transport.POLLING: ["polling"], Transport.WEBSOCKET: ["websocket"], Transport.DEFAULT: None,
}
#: python-engineio refuses a polling payload of more than `Payload.max_decode_packets` packets (16 by
#: default, a guard against floods) and drops the connection ("Unexpected packet from server"). A server
#: answers a long poll with everything queued for the client: in a busy room that is one packet per message
#: from every other member, so the lab's clients take this many. Process-wide: it is a class attribute.
MAX_DECODE_PACKETS = 10_000
#: how long a closing client's close packet gets to reach the server before its HTTP session is closed
CLOSE_GRACE = 0.5
#: reconnection backoff: first try after 0.2 s, doubling up to 1 s, each ± 0.1 s (python-socketio adds
#: ± `randomization_factor` seconds to each delay)
RECONNECT = {"reconnection_delay": 0.2, "reconnection_delay_max": 1.0, "randomization_factor": 0.1}
DETAIL_CHARS = 200


def source_address(index: int, subnets: int) -> str:
    """The address client `index` stands for, one of `subnets` distinct /24s ("" for one: its own).

    198.18.0.0/15 is reserved for network benchmarks (RFC 2544): these are header values only, nothing is
    ever sent to them.
    """
    if subnets <= 1:
        return ""
    return f"198.18.{index % subnets}.{10 + index // subnets}"


def request_kind(method: str, url: URL) -> str:
    if url.query.get("transport") == "websocket":
        return "websocket"
    if "sid" not in url.query:
        return "handshake"
    return "send" if method == "POST" else "poll"


@dataclass
class Recorder:
    """Everything every client saw while the run went on; wakes the drain loop on each message or ack."""

    history: SioHistory
    activity: asyncio.Event = field(default_factory=asyncio.Event)
    #: distinct (message, recipient) pairs received so far
    unique: set[tuple[str, str]] = field(default_factory=set)
    #: False once the harness itself starts closing clients: a disconnect then is no drop
    running: bool = True

    def trace(self, client: str) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_end(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            if not self.running:
                return
            status, detail = params.response.status, ""
            if not (200 <= status < 300 or status == 101):
                try:  # the body is cached: Engine.IO can still read it
                    detail = (await params.response.read()).decode(errors="replace").strip()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    detail = f"(body unreadable: {exc!r})"
            self.history.http.append(HttpEvent(client, time.monotonic(), params.method,
                                               request_kind(params.method, params.url), status,
                                               detail[:DETAIL_CHARS]))

        async def on_error(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestExceptionParams) -> None:
            if not self.running:  # the harness closed the session under a pending long poll
                return
            self.history.http.append(HttpEvent(client, time.monotonic(), params.method,
                                               request_kind(params.method, params.url), None,
                                               repr(params.exception)[:DETAIL_CHARS]))

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace


class _AsyncClient(socketio.AsyncClient):  # type: ignore[misc]
    """AsyncClient that also says when its Engine.IO transport closed, even before any namespace connected
    (python-socketio reports a disconnect only for a connected namespace)."""

    def __init__(self, *args: Any, on_transport_closed: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_transport_closed = on_transport_closed

    async def _handle_eio_disconnect(self, *args: Any) -> None:
        await super()._handle_eio_disconnect(*args)
        self._on_transport_closed()


class Client:
    """One scripted Socket.IO client: its connection, its room membership and its records."""

    def __init__(self, name: str, *, url: str, scenario: Scenario, source: str, recorder: Recorder) -> None:
        self.name, self.url, self.source, self.recorder = name, url, source, recorder
        self.room = scenario.workload.room
        self.transports = TRANSPORTS[scenario.workload.transport]
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), trace_configs=[recorder.trace(name)],
            headers={"X-Forwarded-For": source} if source else None)
        self.sio = _AsyncClient(http_session=self.http, handle_sigint=False,
                                reconnection=scenario.workload.reconnect, on_transport_closed=self._closed,
                                **RECONNECT)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("new-message", self._on_message)
        self.in_room = asyncio.Event()
        self.transport_closed = asyncio.Event()
        self.current: tuple[str, float] | None = None
        self.error = ""

    # -- events ---------------------------------------------------------------------------------------

    async def _on_connect(self) -> None:
        await self.sio.emit("join-room", {"room": self.room, "client": self.name}, callback=self._joined)

    def _joined(self, ack: Any) -> None:
        if isinstance(ack, dict) and "replica" in ack:
            self.current = (str(ack["replica"]), time.monotonic())
            self.in_room.set()
        else:
            self.error = f"join-room refused: {ack!r}"[:DETAIL_CHARS]

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.in_room.clear()
        if self.current is None:
            return
        replica, opened = self.current
        now = time.monotonic()
        self.current = None
        self.recorder.history.sessions.append(Session(self.name, replica, opened, now))
        if self.recorder.running:
            self.recorder.history.drops.append(Drop(self.name, replica, now, str(reason)))

    def _on_message(self, frame: dict[str, Any]) -> None:
        self.recorder.history.received.append(
            Received(str(frame["id"]), self.name, time.monotonic(), str(frame.get("origin", ""))))
        self.recorder.unique.add((str(frame["id"]), self.name))
        self.recorder.activity.set()

    def _closed(self) -> None:
        self.transport_closed.set()

    def _acked(self, msg_id: str, ack: Any = None) -> None:
        replica = str(ack.get("replica", "")) if isinstance(ack, dict) else ""
        self.recorder.history.acks.append(Ack(msg_id, time.monotonic(), replica))
        self.recorder.activity.set()

    # -- script ---------------------------------------------------------------------------------------

    async def join(self, timeout: float) -> bool:
        """Connect and join; True once in the room, False when the transport died or `timeout` passed."""
        try:
            await self.sio.connect(self.url, transports=self.transports, wait=False)
        except (socketio.exceptions.ConnectionError, ValueError) as exc:
            self.error = f"connect failed: {exc}"[:DETAIL_CHARS]
            return False
        joined = asyncio.ensure_future(self.in_room.wait())
        closed = asyncio.ensure_future(self.transport_closed.wait())
        try:
            await asyncio.wait({joined, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
            closed.cancel()
        if self.in_room.is_set():
            return True
        failed = [e for e in self.recorder.history.http if e.client == self.name and not e.ok]
        why = f"{failed[0].status} {failed[0].detail}" if failed else f"not in the room after {timeout:g}s"
        self.error = self.error or f"transport closed before joining: {why}"[:DETAIL_CHARS]
        return False

    async def send(self, count: int, interval: float, rejoin_timeout: float, sent: list[Sent]) -> None:
        """Send `count` messages `interval` apart; while out of the room, wait (up to `rejoin_timeout`)."""
        for seq in range(1, count + 1):
            msg_id = f"{self.name}-{seq}"
            while True:
                try:
                    await asyncio.wait_for(self.in_room.wait(), rejoin_timeout)
                except TimeoutError:
                    self.error = self.error or f"not back in the room within {rejoin_timeout:g}s; stopped sending"
                    return
                at = time.monotonic()
                try:
                    await self.sio.emit("chat-message", {"id": msg_id, "ts": time.time()},
                                        callback=partial(self._acked, msg_id))
                    break
                except socketio.exceptions.BadNamespaceError:  # dropped between the wait and the emit
                    self.in_room.clear()
            sent.append(Sent(msg_id, self.name, at))
            if interval:
                await asyncio.sleep(interval)

    async def close(self) -> None:
        """End the client: its open session stays open in the history (it was there to the end)."""
        if self.current is not None:
            replica, opened = self.current
            self.recorder.history.sessions.append(Session(self.name, replica, opened, None))
            self.current = None
        # shutdown() disconnects (or stops a reconnection in progress). Over polling it then waits for its
        # pending long poll, which the server holds after a client's close packet until the poll times out
        # (~30 s): once the close has had time to go out, closing the HTTP session ends that wait.
        shutdown = asyncio.ensure_future(self.sio.shutdown())
        try:
            await asyncio.wait({shutdown}, timeout=CLOSE_GRACE)
        finally:
            await self.http.close()
            await asyncio.gather(shutdown, return_exceptions=True)


async def run(port: int, scenario: Scenario, *, replicas: list[str], during: During | None = None,
              progress: Progress = lambda line: None) -> SioHistory:
    """Join every client (one at a time), send from all that got in, run the faults meanwhile, drain."""
    wl = scenario.workload
    engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                      MAX_DECODE_PACKETS)
    recorder = Recorder(SioHistory(replicas=list(replicas)))
    width = len(str(wl.clients))
    clients = [Client(f"c{i:0{width}d}", url=f"http://127.0.0.1:{port}", scenario=scenario,
                      source=source_address(i - 1, wl.source_subnets), recorder=recorder)
               for i in range(1, wl.clients + 1)]
    try:
        for c in clients:
            joined = await c.join(wl.connect_timeout)
            recorder.history.clients.append(ClientRecord(c.name, c.source, joined, c.error))
        ready = [c for c in clients if c.in_room.is_set()]
        progress(f"{len(ready)}/{len(clients)} clients in room {wl.room} over {wl.transport.value}; "
                 f"each sends {wl.messages} message(s)")
        if ready:
            started = time.monotonic()
            faults = asyncio.ensure_future(during(started)) if during else None
            try:
                await asyncio.gather(*(c.send(wl.messages, wl.send_interval, wl.connect_timeout,
                                              recorder.history.sent) for c in ready))
            finally:
                if faults is not None:
                    recorder.history.faults = await faults
            await drain(recorder, clients=len(ready), workload_quiet=wl.drain_quiet, timeout=wl.drain_timeout)
    finally:
        recorder.running = False
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return recorder.history


async def drain(recorder: Recorder, *, clients: int, workload_quiet: float, timeout: float) -> None:
    """Wait until every sent message is acknowledged and every acknowledged one reached the other clients,
    or nothing arrived for `workload_quiet` s, or `timeout` s passed. Lost messages never arrive, so the
    quiet period is what ends a lossy run; it is measured from the last frame, not slept blindly."""
    h = recorder.history
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def complete() -> bool:
        return len(h.acks) >= len(h.sent) and len(recorder.unique) >= len(h.acks) * (clients - 1)

    while not complete():
        recorder.activity.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(recorder.activity.wait(), min(workload_quiet, remaining))
        except TimeoutError:
            return
