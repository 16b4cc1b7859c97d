"""The lab's plain WebSocket protocol: the replica in `wslab_app` (labs/app/server.py) and its client.

    connect  /ws?room=R&client=C[&last=SID&seq=N]      server -> {"type": "welcome", "replica", "sid"?, "seq"?}
    client -> {"id", "ts", "body"}                      server -> {"type": "ack", "id", "sid"?, "seq"?} | nack
    server -> {"type": "msg", "id", "sender", "origin", "room", "ts", "body", "sid"?, "seq"?}
    server -> {"type": "resume", "replayed", "trimmed", "trimmed_seqs": [first, last] | null}

With Redis Streams a reconnecting client gives the last stream id it saw and is replayed what it missed.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..accounting.history import History
from ..scenario import AppKind, Broker, Scenario
from .base import JoinFailed, Link, LinkDown, Outcome, ProtocolAdapter, Sink, source_address
from .cells import latency, pct
from .change_cells import CHANGES_KIND, change_columns, has_changes
from .cluster_cells import bytes_notes, cluster_columns


class WebSocketLink(Link):
    def __init__(self, name: str, *, port: int, room: str, sink: Sink, host: str = "127.0.0.1",
                 source: str = "") -> None:
        self.name, self.host, self.port, self.room, self.sink = name, host, port, room, sink
        #: the address it stands for, sent as X-Forwarded-For on the opening handshake ("" for none)
        self.source = source
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        #: where this client is in the room's stream (Streams only): sent back when it reconnects
        self.last_sid: str | None = None
        self.last_seq = 0

    async def open(self, timeout: float) -> str:
        url = f"ws://{self.host}:{self.port}/ws?room={self.room}&client={self.name}"
        if self.last_sid:
            url += f"&last={self.last_sid}&seq={self.last_seq}"
        try:
            ws = await connect(url, open_timeout=timeout, compression=None, max_queue=None, close_timeout=1,
                               additional_headers={"X-Forwarded-For": self.source} if self.source else None)
        except (InvalidHandshake, ConnectionClosed) as exc:
            raise JoinFailed(str(exc)) from None
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except BaseException as exc:
            ws.transport.abort()
            if isinstance(exc, ConnectionClosed):
                raise JoinFailed(f"closed before the welcome: {exc}") from None
            raise
        if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
            ws.transport.abort()
            raise JoinFailed(f"expected a welcome, got {str(welcome)[:100]}")
        if not self.last_sid and "sid" in welcome:
            self.last_sid, self.last_seq = welcome["sid"], welcome["seq"]
        self.ws = ws
        self.reader = asyncio.create_task(self._read(ws))
        return str(welcome["replica"])

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._frame(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            if self.ws is ws:
                self.ws = None

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "msg":
            if "sid" in frame:
                self.last_sid, self.last_seq = frame["sid"], frame["seq"]
            self.sink.on_message(str(frame["id"]), str(frame.get("origin", "")), frame.get("seq"))
        elif kind == "ack":
            self.sink.on_ack(str(frame["id"]), "", frame.get("seq"))
        elif kind == "nack":
            self.sink.on_nack(str(frame["id"]))
        elif kind == "resume":
            first, last = frame.get("trimmed_seqs") or (None, None)
            self.sink.on_trimmed(first, last, int(frame.get("replayed", 0)))

    async def send(self, msg_id: str, ts: float, body: str) -> None:
        ws = self.ws
        if ws is None:
            raise LinkDown(self.name)
        try:
            await ws.send(json.dumps({"id": msg_id, "ts": ts, "body": body}))
        except ConnectionClosed:
            raise LinkDown(self.name) from None

    async def wait_closed(self) -> None:
        if self.reader is not None:
            await asyncio.shield(self.reader)

    async def close(self, *, grace: float) -> None:
        ws = self.ws
        if ws is not None and grace:
            try:
                await asyncio.wait_for(ws.close(), grace)
            except (TimeoutError, ConnectionClosed, OSError):
                ws.transport.abort()
        elif ws is not None:
            ws.transport.abort()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


class WebSocketProtocol(ProtocolAdapter):
    app = AppKind.WEBSOCKET
    app_module = "wslab_app"

    def replica_args(self, scenario: Scenario) -> tuple[str, ...]:
        if scenario.topology.broker is Broker.REDIS_STREAMS:
            return ("--maxlen", str(scenario.topology.maxlen))
        return ()

    def link(self, name: str, index: int, sink: Sink, *, port: int, scenario: Scenario,
             history: History, host: str = "127.0.0.1") -> Link:
        wl = scenario.workload
        return WebSocketLink(name, host=host, port=port, room=wl.room_for(index), sink=sink,
                             source=source_address(index, wl.source_subnets))

    def columns(self, outcome: Outcome) -> dict[str, str]:
        a, s = outcome.accounting, outcome.scenario
        if s.topology.broker.cluster:
            return cluster_columns(outcome)
        if has_changes(s):
            return change_columns(outcome)
        if s.faults:
            return {
                "fault": ", ".join(f"{f.kind.value} {f.target}" for f in s.faults),
                "broker": s.topology.broker.value, "sent": str(a.sent), "expected deliveries": str(a.expected),
                "delivered": str(a.delivered), "lost": str(a.lost),
                "lost in / outside fault": f"{a.lost_in_fault} / {a.lost_outside_fault}",
                "trimmed": dash(a.trimmed), "duplicated": str(a.duplicated), "nacked": str(a.nacked),
                "recovered after reconnect": str(a.recovered), "max gap s": dash(a.max_gap_s, "{:.2f}"),
            }
        return {
            "broker": s.topology.broker.value, "replicas": str(s.topology.replicas),
            "clients": str(s.workload.clients), "msgs sent": str(a.sent), "expected deliveries": str(a.expected),
            "delivered": str(a.delivered), "lost": str(a.lost), "dup": str(a.duplicated),
            "same-server delivered": pct(a.same_delivered, a.same_expected),
            "cross-server delivered": pct(a.cross_delivered, a.cross_expected),
            "offered msg/s": f"{s.workload.clients / s.workload.send_interval:g}",
            "p50 / p99 ms": latency(a),
        }

    def kind(self, outcome: Outcome) -> str:
        s = outcome.scenario
        if s.topology.broker.cluster:
            return "Redis Cluster"
        if has_changes(s):
            return CHANGES_KIND
        return "WebSocket under faults" if s.faults else "WebSocket"

    def notes(self, outcomes: list[Outcome]) -> list[str]:
        """Where runs with and without a broker share an offered rate, how their p50s compare: below
        saturation a broker adds two hops, not a queue. Past 2x the note says what a hop costs here and how
        busy the host was, so the ratio can be read."""
        cost = broker_cost(outcomes, os.getloadavg()[0], os.cpu_count() or 1)
        return ([cost] if cost else []) + bytes_notes(outcomes)


def dash(value: float | None, form: str = "{}") -> str:
    """A figure as text; one that was not measured is "-", never 0."""
    return "-" if value is None else form.format(value)


def offered(s: Scenario) -> float:
    return s.workload.clients / s.workload.send_interval


def broker_cost(outcomes: list[Outcome], load: float, cores: int) -> str:
    """`pubsub p50 1.9 ms = 1.4x no-broker's 1.4 ms at 120 msg/s offered` for the first pair of fault-free
    runs, one without a broker and one with, at the same offered rate ("" when there is no such pair)."""
    calm = [o for o in outcomes if not o.scenario.faults and o.accounting.percentile_ms(0.5) is not None]
    for base in (o for o in calm if o.scenario.topology.broker is Broker.NONE):
        for other in (o for o in calm if o.scenario.topology.broker is not Broker.NONE):
            if offered(other.scenario) != offered(base.scenario):
                continue
            a, b = base.accounting.percentile_ms(0.5), other.accounting.percentile_ms(0.5)
            assert a is not None and b is not None
            times = b / a if a > 0 else float("inf")
            line = (f"{other.scenario.name} p50 {b:.1f} ms = {times:.1f}x {base.scenario.name}'s {a:.1f} ms at "
                    f"{offered(base.scenario):g} msg/s offered (+{b - a:.1f} ms: the broker's two extra hops, "
                    f"replica -> Redis -> replica)")
            if times > 2:
                line += (f"; more than 2x: each hop costs ~{(b - a) / 2:.1f} ms here against {a:.1f} ms for the "
                         f"whole path without a broker (host load average {load:.1f} on {cores} cores)")
            return line
    return ""
