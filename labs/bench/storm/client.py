"""One load process of the storm bench: holds its share of the clients, each of which reconnects after a drop
with the backoff under test, and records every connection attempt. `python -m labs.bench.storm.client
'<json config>'`.

Client i joins room `u<i>` (its own channel: every connection the replica accepts is one Redis SUBSCRIBE), or
`ticker` when i is a multiple of `ticker_every`: a low-rate broadcast room whose deliveries say what a wave
costs the clients that stayed. A client's life is the lab's reconnection loop: connect, read until the
connection closes, wait `backoff_delay(n, ...)` before attempt n after the drop (jitter from a generator
seeded with the client's name), and again until one succeeds. Only the first connection goes through a gate
(`concurrency` at a time): the wave is the clients' own timing.

It talks to the bench in JSON lines, as the connection bench's load processes do: it prints
{"event": "connected", ...} once every client it was given is in (or the ramp deadline passed), then obeys:
  {"cmd": "status"}                 -> {"event": "status", "open": N, "count": N, "drops": N}
  {"cmd": "ticker", "rate": R}      start sending into `ticker` R times a second, from its first open member here
  {"cmd": "quiet"}                  stop sending -> {"event": "quiet", "sent": N}
  {"cmd": "entrance", "host": H, "ports": [...]}   connect there from now on (a balancer that came back elsewhere)
  {"cmd": "records"}                -> {"event": "records", "attempts": [...], "drops": [...], ...}
End of stdin (the bench is gone) ends the process; so does SIGKILL of its process group. Times are
`time.monotonic()`: one clock for every process on the host.
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ...scenario.backoff import backoff_delay

TICKER = "ticker"


def room_of(i: int, ticker_every: int) -> str:
    """Client i's room: the broadcast room for every `ticker_every`-th client, else its own channel."""
    return TICKER if i % ticker_every == 0 else f"u{i}"


def outcome_of(exc: BaseException) -> str:
    """A failed attempt, in one word the bench counts by: `http 502`, `timeout`, `reset`, `refused`, ..."""
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionClosed):
        return "closed before welcome"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}").lower()
    return type(exc).__name__


@dataclass
class Storm:
    host: str
    ports: list[int]
    first: int
    count: int
    ticker_every: int
    concurrency: int
    open_timeout: float
    #: the backoff under test: the first delay, the maximum (s), the randomization
    backoff: tuple[float, float, float]
    conns: dict[int, ClientConnection] = field(default_factory=dict)
    #: every attempt: [client, started, ended, outcome ("ok" or why not), replica ("" when none)]
    attempts: list[list[Any]] = field(default_factory=list)
    #: every drop: [client, when, close code or "no close frame"]
    drops: list[list[Any]] = field(default_factory=list)
    #: ticker messages sent from here: [id, when, sender]; their answers; each receipt: id -> [[client, when]]
    sent: list[list[Any]] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    receipts: dict[str, list[list[Any]]] = field(default_factory=dict)
    ticking: asyncio.Task[None] | None = None

    def uri(self, i: int) -> str:
        return f"ws://{self.host}:{self.ports[i % len(self.ports)]}/ws?room={room_of(i, self.ticker_every)}&client=c{i}"

    async def attempt(self, i: int) -> ClientConnection | None:
        """One connection attempt, recorded: the connection once its welcome arrived, else None."""
        started = time.monotonic()
        try:
            ws = await connect(self.uri(i), compression=None, ping_interval=None, open_timeout=self.open_timeout,
                               close_timeout=1, max_queue=4)
            try:
                welcome = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
            except BaseException:
                await ws.close()
                raise
            if welcome.get("type") != "welcome":
                await ws.close()
                raise ValueError(f"first frame is {welcome.get('type')!r}, not a welcome")
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome the bench counts
            self.attempts.append([i, started, time.monotonic(), outcome_of(exc), ""])
            return None
        self.attempts.append([i, started, time.monotonic(), "ok", str(welcome.get("replica", ""))])
        return ws

    async def live(self, i: int, gate: asyncio.Semaphore) -> None:
        """Client i's whole life: in through the gate, then reconnect after every drop with the backoff."""
        rng = random.Random(f"c{i}")
        ws: ClientConnection | None = None
        async with gate:
            ws = await self.attempt(i)
        n = 0 if ws is None else -1  # the attempt the next wait is for; -1: connected
        while True:
            if ws is None:
                await asyncio.sleep(backoff_delay(n, *self.backoff, rng))
                n += 1
                ws = await self.attempt(i)
                if ws is None:
                    continue
            self.conns[i] = ws
            code = await self.read(i, ws)
            del self.conns[i]
            self.drops.append([i, time.monotonic(), code])
            ws, n = None, 0

    async def read(self, i: int, ws: ClientConnection) -> str:
        """Read until the connection closes; return its close code."""
        try:
            async for raw in ws:
                now = time.monotonic()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "msg":
                    self.receipts.setdefault(frame["id"], []).append([i, now])
                elif kind in ("ack", "nack"):
                    self.answers[frame["id"]] = kind
        except ConnectionClosed as exc:
            return str(exc.rcvd.code) if exc.rcvd else "no close frame"
        return str(ws.close_code)

    async def tick(self, rate: float) -> None:
        """Send `t<n>` into the ticker room every 1/rate s from this process's first open member there."""
        interval, n = 1.0 / rate, 0
        start = time.monotonic()
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            members = sorted(i for i in self.conns if i % self.ticker_every == 0)
            if not members:
                continue
            mid, now = f"t{n}", time.monotonic()
            try:
                await self.conns[members[0]].send(json.dumps({"id": mid, "ts": now}))
            except (ConnectionClosed, KeyError):
                continue
            self.sent.append([mid, now, members[0]])

    async def ramp(self, deadline_s: float) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.concurrency)
        started = time.monotonic()
        for i in range(self.first, self.first + self.count):
            asyncio.get_running_loop().create_task(self.live(i, gate))
        while len(self.conns) < self.count and time.monotonic() - started < deadline_s:
            await asyncio.sleep(0.05)
        failed: dict[str, int] = {}
        for a in self.attempts:
            if a[3] != "ok":
                failed[a[3]] = failed.get(a[3], 0) + 1
        return {"event": "connected", "ok": len(self.conns), "failed": self.count - len(self.conns),
                "errors": failed, "started": started, "finished": time.monotonic()}

    def records(self) -> dict[str, Any]:
        return {"event": "records", "attempts": self.attempts, "drops": self.drops, "sent": self.sent,
                "answers": self.answers, "receipts": self.receipts, "open": len(self.conns)}


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    storm = Storm(host=config["host"], ports=list(config["ports"]), first=int(config["first"]),
                  count=int(config["count"]), ticker_every=int(config["ticker_every"]),
                  concurrency=int(config["concurrency"]), open_timeout=float(config["open_timeout"]),
                  backoff=(float(config["backoff"][0]), float(config["backoff"][1]), float(config["backoff"][2])))
    emit(await storm.ramp(float(config["ramp_deadline"])))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "status":
            emit({"event": "status", "open": len(storm.conns), "count": storm.count, "drops": len(storm.drops)})
        elif cmd["cmd"] == "ticker":
            storm.ticking = loop.create_task(storm.tick(float(cmd["rate"])))
        elif cmd["cmd"] == "quiet":
            if storm.ticking is not None:
                storm.ticking.cancel()
            emit({"event": "quiet", "sent": len(storm.sent)})
        elif cmd["cmd"] == "entrance":
            storm.host, storm.ports = str(cmd["host"]), [int(p) for p in cmd["ports"]]
        elif cmd["cmd"] == "records":
            emit(storm.records())


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the plan counts on the hard limit
    asyncio.run(main(json.loads(sys.argv[1])))
