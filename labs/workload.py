"""Scripted WebSocket clients on the host: connect through nginx, join one room, send, drain, record.

Times are the host's monotonic clock, in one process, so a frame's latency is receive time minus send time.
With `reconnect`, a client whose connection drops comes back with backoff (to whichever replica nginx
picks), says the last stream id it saw, and resends what was never acknowledged; messages it generates
while disconnected wait for the next connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import StackError
from .history import History, Received, Resume, Sent, Session
from .scenario import Workload

BACKOFF = (0.05, 0.1, 0.2, 0.4, 0.5)
Progress = Callable[[str], None]


@dataclass
class Recorder:
    """Everything the clients saw; wakes the drain loop on each frame."""

    received: list[Received] = field(default_factory=list)
    unique: set[tuple[str, str]] = field(default_factory=set)
    resumes: list[Resume] = field(default_factory=list)
    nacked: list[str] = field(default_factory=list)
    activity: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Client:
    name: str
    port: int
    workload: Workload
    recorder: Recorder
    sessions: list[Session] = field(default_factory=list)
    ws: ClientConnection | None = None
    last_sid: str | None = None
    last_seq: int = 0
    unacked: dict[str, str] = field(default_factory=dict)
    queued: list[tuple[str, str]] = field(default_factory=list)
    stopping: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.ws is not None

    async def join(self, timeout: float) -> None:
        """Connect and wait for the welcome; record the session."""
        room = self.workload.room
        url = f"ws://127.0.0.1:{self.port}/ws?room={room}&client={self.name}"
        if self.last_sid:
            url += f"&last={self.last_sid}&seq={self.last_seq}"
        ws = await connect(url, open_timeout=timeout, compression=None, max_queue=None)
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except BaseException:
            await ws.close()
            raise
        if welcome.get("type") != "welcome":
            await ws.close()
            raise ConnectionError(f"expected a welcome, got {welcome}")
        if not self.last_sid and "sid" in welcome:
            self.last_sid, self.last_seq = welcome["sid"], welcome["seq"]
        self.sessions.append(Session(self.name, welcome["replica"], time.monotonic()))
        self.ws = ws
        # What was never acknowledged goes again (same ids: the broker may deduplicate), then the backlog.
        for msg_id, payload in list(self.unacked.items()) + self.queued:
            self.unacked[msg_id] = payload
            await ws.send(payload)
        self.queued.clear()

    async def send(self, msg_id: str, payload: str) -> None:
        if self.ws is None:
            self.queued.append((msg_id, payload))
            return
        self.unacked[msg_id] = payload
        try:
            await self.ws.send(payload)
        except ConnectionClosed:
            pass  # the reader notices, and the message goes again after reconnecting

    async def read(self) -> None:
        """Read frames until the connection ends; then reconnect (if enabled) and go on reading."""
        rec = self.recorder
        while True:
            assert self.ws is not None
            try:
                async for raw in self.ws:
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "msg":
                        rec.received.append(Received(frame["id"], self.name, time.monotonic(), frame["origin"]))
                        rec.unique.add((frame["id"], self.name))
                        if "sid" in frame:
                            self.last_sid, self.last_seq = frame["sid"], frame["seq"]
                        rec.activity.set()
                    elif kind == "ack":
                        self.unacked.pop(frame["id"], None)
                    elif kind == "nack":
                        self.unacked.pop(frame["id"], None)
                        rec.nacked.append(frame["id"])
                    elif kind == "resume":
                        rec.resumes.append(Resume(self.name, time.monotonic(), frame["replayed"],
                                                  bool(frame["trimmed"])))
            except ConnectionClosed:
                pass
            closed_at = time.monotonic()
            last = self.sessions[-1]
            self.sessions[-1] = Session(last.client, last.replica, last.opened, closed_at)
            self.ws = None
            if self.stopping or not self.workload.reconnect:
                return
            await self.reconnect()

    async def reconnect(self) -> None:
        for attempt in range(1000):
            if self.stopping:
                return
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            try:
                await self.join(self.workload.connect_timeout)
                return
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed, ConnectionError):
                continue


async def run(port: int, workload: Workload, *, progress: Progress = lambda s: None,
              during: Callable[[float], Coroutine[Any, Any, object]] | None = None) -> History:
    """Connect every client (all welcomed before anyone sends), send while `during(started_at)` runs
    (the fault schedule), drain, close; return the History."""
    recorder = Recorder()
    width = len(str(workload.clients))
    clients = [Client(f"c{i:0{width}d}", port, workload, recorder) for i in range(1, workload.clients + 1)]
    sent: list[Sent] = []
    side: asyncio.Task[object] | None = None
    side_result: object = None
    try:
        # One at a time, so round-robin placement is exact and reproducible.
        for c in clients:
            try:
                await c.join(workload.connect_timeout)
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed) as exc:
                raise StackError(f"client {c.name} could not join room {workload.room} "
                                 f"through 127.0.0.1:{port}: {exc}") from None
            c.task = asyncio.create_task(c.read())
        progress(f"{len(clients)} clients connected; each sends {workload.messages} message(s)")

        async def send_all(client: Client, start: float) -> None:
            for seq in range(1, workload.messages + 1):
                # A steady rate: message n goes at start + n * interval, however long the sends take.
                await asyncio.sleep(max(0.0, start + (seq - 1) * workload.send_interval - time.monotonic()))
                msg_id = f"{client.name}-{seq}"
                sent.append(Sent(msg_id, client.name, time.monotonic()))
                await client.send(msg_id, json.dumps({"id": msg_id, "ts": time.time(), "body": body}))

        body = "x" * workload.payload
        started = time.monotonic()
        if during is not None:
            side = asyncio.create_task(during(started))
        await asyncio.gather(*(send_all(c, started) for c in clients))
        if side is not None:
            side_result = await side
        await settle(clients, workload)
        await drain(recorder, expected=len(sent) * (len(clients) - 1), workload=workload)
    finally:
        if side is not None and not side.done():
            side.cancel()
            await asyncio.gather(side, return_exceptions=True)
        for c in clients:
            c.stopping = True
        await asyncio.gather(*(c.ws.close() for c in clients if c.ws), return_exceptions=True)
        await asyncio.gather(*(c.task for c in clients if c.task), return_exceptions=True)
    history = History(sessions=[s for c in clients for s in c.sessions], sent=sent, received=recorder.received,
                      resumes=recorder.resumes, nacked=recorder.nacked)
    if isinstance(side_result, list):
        history.faults = side_result
    return history


async def settle(clients: list[Client], workload: Workload) -> None:
    """Wait (up to drain_timeout) until every client is connected and has nothing unsent or unacked."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + workload.drain_timeout
    while loop.time() < deadline:
        if all(c.connected and not c.unacked and not c.queued for c in clients) or not workload.reconnect:
            return
        await asyncio.sleep(0.02)


async def drain(recorder: Recorder, *, expected: int, workload: Workload) -> None:
    """Wait until every expected frame arrived, or nothing arrived for `drain_quiet` s, or `drain_timeout`.

    A lost message never arrives, so the quiet period is what ends a lossy run; it is measured from the
    last frame seen, not slept blindly.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + workload.drain_timeout
    while len(recorder.unique) < expected:
        recorder.activity.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(recorder.activity.wait(), min(workload.drain_quiet, remaining))
        except TimeoutError:
            return
