"""The scripted clients, for every protocol: join one at a time, send on a steady schedule while the
faults run, reconnect and resend, settle, drain, and record one History.

A protocol supplies only the link (how to connect, join, send, and what comes back). Times are the host's
monotonic clock, in one process, so a frame's latency is receive time minus send time. With `reconnect`,
a client whose connection drops comes back with backoff (to whichever replica nginx picks) and resends
what was never acknowledged, under the same ids; messages it generates while away wait for the next
connection. The backoff is the scenario's (`Workload.backoff`: socket.io-client's formula); its jitter draws
from a random.Random seeded with the client's name, so a run's delays are the same every time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .accounting.history import (
    Ack,
    ClientRecord,
    FaultEvent,
    History,
    Received,
    Resume,
    Sent,
    Session,
)
from .infra.faults import ClientSide
from .protocols.base import JoinFailed, Link, LinkDown, ProtocolAdapter
from .scenario import ALL_REPLICAS, Scenario

#: errors a connection attempt may end with; anything else is a bug in the lab
JOIN_ERRORS = (OSError, TimeoutError, JoinFailed, LinkDown, ConnectionError)
During = Callable[[float, ClientSide], Awaitable[list[FaultEvent]]]
#: how long a fault's thread waits for the clients to close their transports
CLOSE_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


class Recorder:
    """The run's History as it is written, and a wake-up for the drain on each frame or ack."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.activity = asyncio.Event()
        self.unique: set[tuple[str, str]] = set()
        self.resolved: set[str] = set()


class Client:
    """One scripted client: its link, its membership, what it still owes the room."""

    def __init__(self, name: str, index: int, due: int, scenario: Scenario, recorder: Recorder,
                 link: Callable[[Client], Link]) -> None:
        self.name, self.due, self.recorder = name, due, recorder
        self.room = scenario.workload.room_for(index)
        self.workload = scenario.workload
        self.link = link(self)
        self.current: tuple[str, float] | None = None
        #: generated and not yet acknowledged (sent, or waiting for a connection): (wall-clock ts, body)
        self.unacked: dict[str, tuple[float, str]] = {}
        #: unacknowledged messages written on a connection at least once
        self.written: set[str] = set()
        self.stopping = False
        self.watcher: asyncio.Task[None] | None = None
        self.error = ""
        #: the backoff's jitter: seeded with the name, so that every run draws the same delays
        self.rng = random.Random(name)

    # -- what the link reports (protocols.base.Sink) ---------------------------------------------------

    def on_message(self, msg_id: str, origin: str, seq: int | None) -> None:
        rec = self.recorder
        rec.history.received.append(Received(msg_id, self.name, time.monotonic(), origin, seq))
        rec.unique.add((msg_id, self.name))
        rec.activity.set()

    def on_ack(self, msg_id: str, replica: str, seq: int | None) -> None:
        self.unacked.pop(msg_id, None)
        self.written.discard(msg_id)
        self.recorder.history.acks.append(Ack(msg_id, time.monotonic(), replica, seq))
        self.recorder.resolved.add(msg_id)
        self.recorder.activity.set()

    def on_nack(self, msg_id: str) -> None:
        self.unacked.pop(msg_id, None)
        self.written.discard(msg_id)
        self.recorder.history.nacked.append(msg_id)
        self.recorder.resolved.add(msg_id)
        self.recorder.activity.set()

    def on_trimmed(self, first: int | None, last: int | None, replayed: int) -> None:
        self.recorder.history.resumes.append(Resume(self.name, time.monotonic(), replayed, first, last))

    # -- the script ------------------------------------------------------------------------------------

    async def join(self, timeout: float) -> bool:
        """Open a connection and get into the room; then resend what was never acknowledged, and the
        backlog. False (with `error` set) when that did not happen."""
        try:
            replica = await self.link.open(timeout)
        except JOIN_ERRORS as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            return False
        self.current = (replica, time.monotonic())
        for msg_id in list(self.unacked):  # in the order they were generated
            await self._write(msg_id)
        return True

    async def send(self, msg_id: str, body: str) -> None:
        self.unacked[msg_id] = (time.time(), body)
        if self.current is not None:  # else it waits in `unacked` for the next connection
            await self._write(msg_id)

    async def _write(self, msg_id: str) -> None:
        if msg_id not in self.unacked:
            return  # acknowledged meanwhile
        ts, body = self.unacked[msg_id]
        if msg_id in self.written:
            self.recorder.history.resent.append(Sent(msg_id, self.name, time.monotonic()))
        self.written.add(msg_id)
        try:
            await self.link.send(msg_id, ts, body)
        except LinkDown:
            pass  # the watcher notices the drop; the message goes again after reconnecting

    async def watch(self) -> None:
        """Follow the connection: record each drop, and reconnect when the workload says so."""
        while True:
            await self.link.wait_closed()
            if self.stopping:
                return
            replica, opened = self.current or ("", time.monotonic())
            self.recorder.history.sessions.append(Session(self.name, replica, opened, time.monotonic(),
                                                          self.link.close_code))
            self.current = None
            if not self.workload.reconnect:
                return
            if not await self.reconnect():
                return

    async def reconnect(self) -> bool:
        attempt = 0
        while not self.stopping:
            await asyncio.sleep(self.workload.backoff(attempt, self.rng))
            attempt += 1
            if not self.stopping and await self.join(self.workload.connect_timeout):
                return True
        return False

    async def close(self, grace: float) -> None:
        self.stopping = True
        if self.current is not None:
            replica, opened = self.current
            self.recorder.history.sessions.append(Session(self.name, replica, opened, None))
            self.current = None
        await self.link.close(grace=grace)
        if self.watcher is not None:
            self.watcher.cancel()
            await asyncio.gather(self.watcher, return_exceptions=True)

    @property
    def settled(self) -> bool:
        return self.current is not None and not self.unacked


class Clients(ClientSide):
    """The scripted clients as a fault sees them, from its own thread (infra.faults.ClientSide)."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self.loop = asyncio.get_running_loop()

    def close_transports(self, target: str) -> list[str]:
        return asyncio.run_coroutine_threadsafe(self._close(target), self.loop).result(CLOSE_TIMEOUT_S)

    async def _close(self, target: str) -> list[str]:
        chosen = [c for c in self.clients
                  if c.current is not None and (target == ALL_REPLICAS or c.current[0] == target)]
        await asyncio.gather(*(c.link.drop_transport() for c in chosen))
        return [c.name for c in chosen]


async def run(port: int, scenario: Scenario, protocol: ProtocolAdapter, *, replicas: list[str], host: str = "127.0.0.1",
              during: During | None = None, progress: Progress = lambda line: None) -> History:
    """Join every client (one at a time, so round-robin placement is exact), send from every client that
    got in while `during(started, clients)` runs the faults, settle, drain, close; return the History."""
    wl = scenario.workload
    protocol.prepare()
    history = protocol.new_history()
    history.replicas = list(replicas)
    recorder = Recorder(history)
    width = len(str(wl.clients))
    names = [f"c{i:0{width}d}" for i in range(1, wl.clients + 1)]
    clients = [Client(name, i, wl.messages, scenario, recorder,
                      partial(protocol.link, name, i, host=host, port=port, scenario=scenario, history=history))
               for i, name in enumerate(names)]
    side: asyncio.Future[list[FaultEvent]] | None = None
    grace = 0.5
    try:
        for c in clients:
            joined = await c.join(wl.connect_timeout)
            history.clients.append(ClientRecord(c.name, joined, c.due, c.link.source, c.error, c.room))
            if joined:
                c.watcher = asyncio.create_task(c.watch())
        ready = [c for c in clients if c.watcher is not None]
        where = f"room {wl.room}" if wl.rooms == 1 else f"{wl.rooms} rooms"
        progress(f"{len(ready)}/{len(clients)} clients in {where}; each sends {wl.messages} message(s)")
        if ready:
            started = time.monotonic()
            if during is not None:
                side = asyncio.ensure_future(during(started, Clients(ready)))
            body = "x" * wl.payload
            # each client on its own phase of the interval: the room's sends come evenly spaced, not in
            # bursts of one per client (a burst queues at the broker and measures the burst, not the hop)
            await asyncio.gather(*(_send_all(c, started + i * wl.send_interval / len(ready), wl.messages,
                                             wl.send_interval, body, history)
                                   for i, c in enumerate(ready)))
            if side is not None:
                history.faults = await side
            if wl.reconnect:
                await _until(lambda: all(c.settled for c in ready), wl.drain_timeout, recorder)
            members = Counter(c.room for c in ready)
            room_of = {c.name: c.room for c in ready}
            due = sum(members[room_of[m.sender]] - 1 for m in history.sent)
            await drain(recorder, members=len(ready), timeout=wl.drain_timeout, quiet=wl.drain_quiet, due=due)
    except asyncio.CancelledError:
        grace = 0.0  # interrupted: close at once
        raise
    finally:
        if side is not None and not side.done():
            side.cancel()
            await asyncio.gather(side, return_exceptions=True)
        await asyncio.gather(*(c.close(grace) for c in clients), return_exceptions=True)
    return history


async def _send_all(client: Client, start: float, count: int, interval: float, body: str,
                    history: History) -> None:
    """A steady rate: message n goes at start + (n - 1) * interval, however long the sends take."""
    for n in range(1, count + 1):
        await asyncio.sleep(max(0.0, start + (n - 1) * interval - time.monotonic()))
        msg_id = f"{client.name}-{n}"
        history.sent.append(Sent(msg_id, client.name, time.monotonic()))
        await client.send(msg_id, body)


async def _until(done: Callable[[], bool], timeout: float, recorder: Recorder) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done() and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def drain(recorder: Recorder, *, members: int, timeout: float, quiet: float, due: int | None = None) -> None:
    """Wait until every sent message is acknowledged (or refused) and has reached every other member, or
    nothing arrived for `quiet` s, or `timeout` s passed. A lost message never arrives, so the quiet
    period is what ends a lossy run; it is measured from the last frame or ack, not slept blindly.
    `due`: how many (message, recipient) pairs to wait for when clients are spread over rooms (default:
    every message at every other member)."""
    h = recorder.history
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    wanted = len(h.sent) * (members - 1) if due is None else due

    def complete() -> bool:
        return len(recorder.resolved) >= len(h.sent) and len(recorder.unique) >= wanted

    while not complete():
        recorder.activity.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(recorder.activity.wait(), min(quiet, remaining))
        except TimeoutError:
            return


def drive(port: int, scenario: Scenario, protocol: ProtocolAdapter, *, replicas: list[str], host: str = "127.0.0.1",
          during: During | None = None, progress: Progress = lambda line: None,
          cancelling: Callable[[Callable[[], None]], Any] | None = None) -> History:
    """Run the clients on a fresh event loop. `cancelling(cancel)` is a context manager under which a
    signal cancels the workload (labs.signals.cancelling)."""
    async def main() -> History:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        if cancelling is None:
            return await run(port, scenario, protocol, replicas=replicas, host=host, during=during, progress=progress)
        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        with cancelling(cancel):
            return await run(port, scenario, protocol, replicas=replicas, host=host, during=during, progress=progress)

    return asyncio.run(main())
