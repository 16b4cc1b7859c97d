"""Scripted WebSocket clients on the host: connect through nginx, join one room, send, drain, record.

Times are the host's monotonic clock, in one process, so a frame's latency is receive time minus send time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import StackError
from .history import History, Received, Sent, Session
from .scenario import Workload


@dataclass
class Client:
    name: str
    ws: ClientConnection
    replica: str
    opened: float
    closed: float | None = None
    reader: asyncio.Task[None] | None = None
    frames: list[Received] = field(default_factory=list)


@dataclass
class Recorder:
    """Collects frames from every client and wakes the drain loop on each one."""

    received: list[Received] = field(default_factory=list)
    unique: set[tuple[str, str]] = field(default_factory=set)
    activity: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, client: Client) -> None:
        try:
            async for raw in client.ws:
                frame = json.loads(raw)
                if frame.get("type") == "msg":
                    self.received.append(Received(frame["id"], client.name, time.monotonic(), frame["origin"]))
                    self.unique.add((frame["id"], client.name))
                    self.activity.set()
        except ConnectionClosed:
            pass
        finally:
            client.closed = time.monotonic()


async def join(port: int, room: str, name: str, timeout: float) -> Client:
    url = f"ws://127.0.0.1:{port}/ws?room={room}&client={name}"
    try:
        ws = await connect(url, open_timeout=timeout, compression=None, max_queue=None)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed) as exc:
        raise StackError(f"client {name} could not join room {room} through 127.0.0.1:{port}: {exc}") from None
    return Client(name, ws, welcome["replica"], time.monotonic())


async def run(port: int, workload: Workload, *, progress: Callable[[str], None] = lambda s: None) -> History:
    """Connect every client (all must be welcomed before anyone sends), send, drain, close; return History."""
    recorder = Recorder()
    width = len(str(workload.clients))
    names = [f"c{i:0{width}d}" for i in range(1, workload.clients + 1)]
    clients: list[Client] = []
    sent: list[Sent] = []
    try:
        # One at a time, so round-robin placement is exact and reproducible.
        for name in names:
            client = await join(port, workload.room, name, workload.connect_timeout)
            client.reader = asyncio.create_task(recorder.read(client))
            clients.append(client)
        progress(f"{len(clients)} clients connected; each sends {workload.messages} message(s)")

        async def send_all(client: Client) -> None:
            for seq in range(1, workload.messages + 1):
                msg_id = f"{client.name}-{seq}"
                sent.append(Sent(msg_id, client.name, time.monotonic()))
                await client.ws.send(json.dumps({"id": msg_id, "ts": time.time()}))
                if workload.send_interval:
                    await asyncio.sleep(workload.send_interval)

        await asyncio.gather(*(send_all(c) for c in clients))
        await drain(recorder, expected=len(sent) * (len(clients) - 1), workload=workload)
    finally:
        await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
        await asyncio.gather(*(c.reader for c in clients if c.reader), return_exceptions=True)
    sessions = [Session(c.name, c.replica, c.opened, c.closed) for c in clients]
    return History(sessions=sessions, sent=sent, received=recorder.received)


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
