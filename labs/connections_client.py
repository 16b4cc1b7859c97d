"""One load process of `bench_connections`: holds its share of the idle WebSocket connections and records
when each of them receives a broadcast. `python -m labs.connections_client '<json config>'`.

It talks to the bench in JSON lines: it prints {"event": "connected", ...} once every connection it was
given is open (or failed), then obeys commands read from stdin:
  {"cmd": "send", "id": ID}                  send ID from its first open connection, print {"event": "sent"}
  {"cmd": "collect", "id": ID, "timeout": S} wait until every open connection but the sender has ID, and
                                             the sender its ack or nack (or S seconds passed), print
                                             {"event": "arrivals", ..., "answer": "ack" | "nack" | null}
  {"cmd": "stats"}                           print {"event": "stats", "open": ..., "rss_bytes": ...}
End of stdin (the bench is gone) ends the process; so does SIGTERM or SIGKILL of its process group.
Times are `time.monotonic()`: one clock for every process on the host.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .app.server import rss_bytes

#: how often `collect` looks whether a broadcast has reached every connection
POLL_S = 0.02


@dataclass
class Load:
    host: str
    ports: list[int]
    first: int
    count: int
    room: str
    concurrency: int
    open_timeout: float
    conns: dict[int, ClientConnection] = field(default_factory=dict)
    #: broadcast id -> receipt times; and per id the connections that had it (to count duplicates)
    times: dict[str, list[float]] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sender: int | None = None
    #: broadcast id -> "ack" or "nack", as the sender's replica answered
    acks: dict[str, str] = field(default_factory=dict)

    async def open_one(self, i: int, gate: asyncio.Semaphore) -> None:
        uri = f"ws://{self.host}:{self.ports[i % len(self.ports)]}/ws?room={self.room}&client=c{i}"
        async with gate:
            try:
                ws = await connect(uri, compression=None, ping_interval=None, open_timeout=self.open_timeout,
                                   close_timeout=1, max_queue=4)
                welcome = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
                if welcome.get("type") != "welcome":
                    raise ValueError(f"first frame is {welcome.get('type')!r}, not a welcome")
            except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind, and reported
                self.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                return
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
        gate = asyncio.Semaphore(self.concurrency)
        started = time.monotonic()
        await asyncio.gather(*(self.open_one(i, gate) for i in range(self.first, self.first + self.count)))
        return {"event": "connected", "ok": len(self.conns), "failed": self.count - len(self.conns),
                "errors": dict(self.errors.most_common(5)), "started": started, "finished": time.monotonic(),
                "rss_bytes": rss_bytes()}

    async def send(self, mid: str) -> dict[str, Any]:
        self.sender = min(self.conns)
        at = time.monotonic()
        await self.conns[self.sender].send(json.dumps({"id": mid, "ts": at, "body": "broadcast"}))
        return {"event": "sent", "id": mid, "at": at, "client": f"c{self.sender}"}

    async def collect(self, mid: str, timeout: float) -> dict[str, Any]:
        """Wait until every open connection (but the sender) has `mid`, or `timeout` s. Polls: waking on
        every receipt to check thousands of connections would cost more than the receipts themselves."""
        deadline = time.monotonic() + timeout
        while True:
            have = self.seen.get(mid, set())
            # cheap test first; the exact one (which connections still wait) only when it may pass
            waiting = ([i for i in self.conns if i not in have and i != self.sender]
                       if len(have) >= len(self.conns) - 1 or time.monotonic() >= deadline else [-1])
            if (not waiting and (self.sender is None or mid in self.acks)) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        return {"event": "arrivals", "id": mid, "times": self.times.get(mid, []), "duplicates": self.duplicates[mid],
                "open": len(self.conns), "closed": dict(self.closed), "waiting": len(waiting),
                "answer": self.acks.get(mid)}


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    load = Load(host=config["host"], ports=list(config["ports"]), first=int(config["first"]),
                count=int(config["count"]), room=config["room"], concurrency=int(config["concurrency"]),
                open_timeout=float(config["open_timeout"]))
    emit(await load.open_all())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            emit(await load.send(cmd["id"]))
        elif cmd["cmd"] == "collect":
            emit(await load.collect(cmd["id"], float(cmd["timeout"])))
        elif cmd["cmd"] == "stats":
            emit({"event": "stats", "open": len(load.conns), "closed": dict(load.closed), "rss_bytes": rss_bytes()})


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the plan counts on the hard limit
    asyncio.run(main(json.loads(sys.argv[1])))
