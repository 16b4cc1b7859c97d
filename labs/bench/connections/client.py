"""One load process of `bench_connections`: holds its share of the idle WebSocket connections and records
when each of them receives a broadcast. `python -m labs.bench.connections.client '<json config>'`.

Connection i joins room `room_name(room, rooms, i)`: the one room itself, or `<room>-<i mod rooms>`. A
broadcast round R sends one message per room, `R-<k>` for room k, from the room's first connection
(connection k) or, when that one is not open, from another open member.

It talks to the bench in JSON lines: it prints {"event": "connected", ...} once every connection it was
given is open (or failed), then obeys commands read from stdin:
  {"cmd": "send", "round": R, "rooms": [k, ...]}  send R-<k> into each room k listed (from its first open
                                                   member here), print {"event": "sent", "at": {id: t}}
  {"cmd": "collect", "round": R, "timeout": S}     wait until every open connection but the senders has its
                                                   room's message of round R, and the senders their acks or
                                                   nacks (or S seconds passed), print {"event": "arrivals",
                                                   "messages": {id: {"times": [...], "expecting": n}}, ...}
  {"cmd": "stats"}                                 print {"event": "stats", "open": ..., "rss_bytes": ...}
While connecting it is paced by the config's "ramp" (`labs.bench.connections.ramp.Ramp`'s fields; none:
unpaced) and prints {"event": "window", "t_s", "rate", "opened", "failed", "closed", "median_s"} as each
window of the ramp closes; "connected" carries them all ("ramp").
End of stdin (the bench is gone) ends the process; so does SIGTERM or SIGKILL of its process group.
Times are `time.monotonic()`: one clock for every process on the host.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ...app.server import rss_bytes
from .plan import room_name
from .ramp import Ramp, next_start, stop_reason

#: how often `collect` looks whether a broadcast has reached every connection
POLL_S = 0.02


def message_id(round_: str, k: int) -> str:
    """Round R's message into room k: `R-k` (a message id is [A-Za-z0-9_-], the replica closes on others)."""
    return f"{round_}-{k}"


@dataclass
class Window:
    """One window of the ramp so far: each handshake's seconds, failures, and closes counted before it."""

    handshakes: list[float] = field(default_factory=list)
    failed: int = 0
    closed_before: int = 0


@dataclass
class Load:
    host: str
    ports: list[int]
    first: int
    count: int
    room: str
    concurrency: int
    open_timeout: float
    rooms: int = 1
    conns: dict[int, ClientConnection] = field(default_factory=dict)
    #: message id -> receipt times; and per id the connections that had it (to count duplicates)
    times: dict[str, list[float]] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: round -> {message id: the connection that sent it from this process}
    senders: dict[str, dict[str, int]] = field(default_factory=dict)
    #: message id -> "ack" or "nack", as the sender's replica answered
    acks: dict[str, str] = field(default_factory=dict)
    #: how the connections are paced; the rate the current window runs at; the window's outcome so far
    ramp: Ramp = field(default_factory=lambda: Ramp(rate=None))
    rate: float | None = None
    window: Window = field(default_factory=lambda: Window())
    windows: list[dict[str, Any]] = field(default_factory=list)
    #: connections never tried: the ramp gave up (`ramp.gives_up`)
    untried: int = 0
    stopped: str | None = None

    async def open_one(self, i: int, gate: asyncio.Semaphore) -> None:
        """Open connection i and await its welcome; the caller took a place at `gate`, released here."""
        room = room_name(self.room, self.rooms, i)
        uri = f"ws://{self.host}:{self.ports[i % len(self.ports)]}/ws?room={room}&client=c{i}"
        began = time.monotonic()
        try:
            ws = await connect(uri, compression=None, ping_interval=None, open_timeout=self.open_timeout,
                               close_timeout=1, max_queue=4)
            welcome = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
            if welcome.get("type") != "welcome":
                raise ValueError(f"first frame is {welcome.get('type')!r}, not a welcome")
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind, and reported
            self.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            self.window.failed += 1
            return
        finally:
            gate.release()
        self.window.handshakes.append(time.monotonic() - began)
        self.conns[i] = ws
        asyncio.get_running_loop().create_task(self.read(i, ws))

    async def read(self, i: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.monotonic()
                frame = json.loads(raw)
                if frame.get("type") in ("ack", "nack"):
                    self.acks[frame["id"]] = frame["type"]
                if frame.get("type") != "msg":
                    continue
                mid = frame["id"]
                seen = self.seen.setdefault(mid, set())
                if i in seen:
                    self.duplicates[mid] += 1
                    continue
                seen.add(i)
                self.times.setdefault(mid, []).append(now)
        except ConnectionClosed as exc:
            self.closed[f"{exc.rcvd.code if exc.rcvd else 'no close frame'}"] += 1
        self.conns.pop(i, None)

    async def open_all(self) -> dict[str, Any]:
        """Open every connection of this share, paced by `ramp` and at most `concurrency` at a time."""
        gate = asyncio.Semaphore(self.concurrency)
        started = due = time.monotonic()
        self.rate = self.ramp.rate
        looking = asyncio.get_running_loop().create_task(self.look(started))
        tasks = []
        for i in range(self.first, self.first + self.count):
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            await gate.acquire()
            self.stopped = stop_reason(self.ramp, self.windows, time.monotonic() - started)
            if self.stopped:
                gate.release()
                self.untried = self.first + self.count - i
                break
            tasks.append(asyncio.get_running_loop().create_task(self.open_one(i, gate)))
            due = next_start(due, time.monotonic(), self.rate)
        await asyncio.gather(*tasks)
        looking.cancel()
        self.close_window(started)
        return {"event": "connected", "ok": len(self.conns), "failed": self.count - len(self.conns),
                "untried": self.untried, "stopped": self.stopped,
                "errors": dict(self.errors.most_common(5)), "closed": dict(self.closed), "started": started,
                "finished": time.monotonic(), "rss_bytes": rss_bytes(), "ramp": self.windows}

    async def look(self, started: float) -> None:
        """Every window: record it, and set the next window's rate from it."""
        while True:
            await asyncio.sleep(self.ramp.window_s)
            self.close_window(started)

    def close_window(self, started: float) -> None:
        w, closed = self.window, sum(self.closed.values())
        median = statistics.median(w.handshakes) if w.handshakes else None
        opened, lost = len(w.handshakes), closed - w.closed_before
        row = {"t_s": round(time.monotonic() - started, 2), "rate": round(self.rate or 0.0, 2), "opened": opened,
               "failed": w.failed, "closed": lost, "median_s": None if median is None else round(median, 3)}
        self.windows.append(row)
        emit({"event": "window", **row})
        if self.rate is not None:
            self.rate = self.ramp.next_rate(self.rate, tried=opened + w.failed, failed=w.failed, closed=lost,
                                            median_s=median)
        self.window = Window(closed_before=closed)

    def wanted(self, round_: str) -> dict[int, str]:
        """Each open connection's message of `round_` (its room's), senders left out."""
        senders = set(self.senders.get(round_, {}).values())
        return {i: message_id(round_, i % self.rooms) for i in self.conns if i not in senders}

    async def send(self, round_: str, rooms: list[int]) -> dict[str, Any]:
        at: dict[str, float] = {}
        senders = self.senders.setdefault(round_, {})
        for k in rooms:
            # the room's first connection, or (when it is not open) its first open member here
            sender = k if k in self.conns else min((i for i in self.conns if i % self.rooms == k), default=None)
            if sender is None:
                continue
            mid = message_id(round_, k)
            senders[mid] = sender
            at[mid] = time.monotonic()
            await self.conns[sender].send(json.dumps({"id": mid, "ts": at[mid], "body": "broadcast"}))
        return {"event": "sent", "round": round_, "at": at}

    async def collect(self, round_: str, timeout: float) -> dict[str, Any]:
        """Wait until every open connection (but the senders) has its room's message of `round_`, and every
        message sent from here its answer, or `timeout` s. Polls: waking on every receipt to check thousands
        of connections would cost more than the receipts themselves."""
        deadline = time.monotonic() + timeout
        mine = list(self.senders.get(round_, {}))
        ids = [message_id(round_, k) for k in range(self.rooms)]
        while True:
            # cheap test first; the exact one (which connections still wait) only when it may pass
            have = sum(len(self.seen.get(mid, ())) for mid in ids)
            late = time.monotonic() >= deadline
            wanted = self.wanted(round_) if have >= len(self.conns) - len(mine) or late else None
            waiting = -1 if wanted is None else sum(1 for i, mid in wanted.items() if i not in self.seen.get(mid, ()))
            if (waiting == 0 and all(mid in self.acks for mid in mine)) or late:
                break
            await asyncio.sleep(POLL_S)
        assert wanted is not None
        expecting = Counter(wanted.values())
        return {"event": "arrivals", "round": round_,
                "messages": {mid: {"times": self.times.get(mid, []), "expecting": expecting.get(mid, 0),
                                   "duplicates": self.duplicates[mid]}
                             for mid in ids if mid in expecting or mid in self.times or mid in mine},
                "answers": {mid: self.acks.get(mid) for mid in mine},
                "open": len(self.conns), "closed": dict(self.closed), "waiting": waiting}


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    load = Load(host=config["host"], ports=list(config["ports"]), first=int(config["first"]),
                count=int(config["count"]), room=config["room"], concurrency=int(config["concurrency"]),
                open_timeout=float(config["open_timeout"]), rooms=int(config.get("rooms", 1)),
                ramp=Ramp(**config["ramp"]) if config.get("ramp") else Ramp(rate=None))
    emit(await load.open_all())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            emit(await load.send(str(cmd["round"]), [int(k) for k in cmd["rooms"]]))
        elif cmd["cmd"] == "collect":
            emit(await load.collect(str(cmd["round"]), float(cmd["timeout"])))
        elif cmd["cmd"] == "stats":
            emit({"event": "stats", "open": len(load.conns), "closed": dict(load.closed), "rss_bytes": rss_bytes()})


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the plan counts on the hard limit
    asyncio.run(main(json.loads(sys.argv[1])))
