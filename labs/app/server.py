"""An asyncio WebSocket chat replica: clients join a room and every message reaches the room's other members.

Protocol (JSON text frames):
  connect   /ws?room=R&client=C[&last=SID&seq=N]   (resume after stream id SID, numbered N; streams only)
  server -> {"type": "welcome", "replica": NAME, "client": C, "room": R, "sid": SID?, "seq": N?}
  server -> {"type": "resume", "after": SID, "replayed": N, "trimmed": K}   (K entries it missed are gone)
  client -> {"id": MSG_ID, "ts": SEND_TIME, "body": TEXT?}
  server -> {"type": "ack", "id": MSG_ID}  once the broker has it, or {"type": "nack", ...} if it gave up
  server -> {"type": "msg", "id": MSG_ID, "sender": C, "origin": NAME, "room": R, "ts": SEND_TIME,
             "body": TEXT, "sid": SID?, "seq": N?}
  GET /healthz -> 200 when the broker answers, with this replica's counters as JSON (503 otherwise)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .brokers import NoBroker, PublishFailed
from .streams import RedisStreams, sid_key

VERSIONS = {"python": sys.version.split()[0], "websockets": websockets.__version__}
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
log = logging.getLogger("wslab.app")


@dataclass
class Member:
    """One connected client. With streams, `upto` is the last stream id it was sent: never send it again."""

    ws: ServerConnection
    upto: tuple[int, int] = (0, 0)
    replaying: bool = False
    held: list[str] = field(default_factory=list)


class Replica:
    def __init__(self, name: str, broker: NoBroker) -> None:
        self.name = name
        self.broker = broker
        self.rooms: dict[str, dict[str, Member]] = defaultdict(dict)
        self.counters = {"connections": 0, "received": 0, "delivered_frames": 0, "skipped_duplicates": 0}

    def deliver(self, room: str, frame: str) -> None:
        """Fan a frame out to this replica's members of `room`, except its sender."""
        members = self.rooms.get(room)
        if not members:
            return
        decoded = json.loads(frame)
        sender, sid = decoded["sender"], decoded.get("sid")
        targets = []
        for client, member in members.items():
            if client == sender:
                continue
            if sid is not None:
                if member.replaying:
                    member.held.append(frame)
                    continue
                key = sid_key(sid)
                if key <= member.upto:
                    self.counters["skipped_duplicates"] += 1
                    continue
                member.upto = key
            targets.append(member.ws)
        broadcast(targets, frame)
        self.counters["delivered_frames"] += len(targets)

    async def resume(self, room: str, client: str, member: Member, after: str, after_seq: int, *,
                     replay: bool) -> None:
        """Replay what the client missed after `after` (when asked), then release what arrived live
        meanwhile: each entry at most once, in stream order."""
        assert isinstance(self.broker, RedisStreams)
        member.upto = sid_key(after)
        frames, trimmed = await self.broker.replay(room, after, after_seq) if replay else ([], 0)
        member.replaying = False
        for frame in frames + member.held:
            self.deliver_one(member, client, frame)
        member.held.clear()
        if replay:
            await member.ws.send(json.dumps({"type": "resume", "after": after, "replayed": len(frames),
                                             "trimmed": trimmed}))

    def gap(self, room: str, count: int) -> None:
        """Tell the room's local members that `count` entries they were owed were trimmed unread."""
        notice = json.dumps({"type": "resume", "after": "", "replayed": 0, "trimmed": count})
        broadcast([m.ws for m in self.rooms.get(room, {}).values()], notice)

    def deliver_one(self, member: Member, client: str, frame: str) -> None:
        decoded = json.loads(frame)
        key = sid_key(decoded["sid"])
        if decoded["sender"] != client and key > member.upto:
            broadcast([member.ws], frame)
            self.counters["delivered_frames"] += 1
        member.upto = max(member.upto, key)

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handler runs after the opening handshake
        query = parse_qs(urlsplit(ws.request.path).query)
        room, client = query.get("room", [""])[0], query.get("client", [""])[0]
        last, seq = query.get("last", [""])[0], query.get("seq", ["0"])[0]
        if (not (ID_RE.match(room) and ID_RE.match(client)) or (last and not SID_RE.match(last))
                or not seq.isdigit()):
            await ws.close(1008, "room and client must match [A-Za-z0-9_-]{1,64}, last a stream id, seq a number")
            return
        if client in self.rooms[room]:
            await ws.close(1008, f"client {client} is already in room {room} here")
            return
        broker = self.broker
        streams = isinstance(broker, RedisStreams)
        member = Member(ws, replaying=streams)  # with streams, hold live frames until the start is known
        self.rooms[room][client] = member
        self.counters["connections"] += 1
        try:
            await self.broker.join(room)
            welcome = {"type": "welcome", "replica": self.name, "client": client, "room": room}
            if isinstance(broker, RedisStreams):
                # A new client starts at the stream's current end; a returning one where it left off.
                after, after_seq = (last, int(seq)) if last else await broker.end_id(room)
                await ws.send(json.dumps({**welcome, "sid": after, "seq": after_seq}))
                await self.resume(room, client, member, after, after_seq, replay=bool(last))
            else:
                await ws.send(json.dumps(welcome))
            async for raw in ws:
                msg = json.loads(raw)
                self.counters["received"] += 1
                frame = {"type": "msg", "id": str(msg["id"]), "sender": client, "origin": self.name,
                         "room": room, "ts": msg["ts"], "body": str(msg.get("body", ""))}
                try:
                    await self.broker.publish(room, frame)
                except PublishFailed:
                    await ws.send(json.dumps({"type": "nack", "id": frame["id"]}))
                else:
                    await ws.send(json.dumps({"type": "ack", "id": frame["id"]}))
        except ConnectionClosed:
            pass
        finally:
            del self.rooms[room][client]
            if not self.rooms[room]:
                del self.rooms[room]
            await self.broker.leave(room)

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            ok = await self.broker.healthy()
            rooms = {room: len(members) for room, members in self.rooms.items()}
            body = json.dumps({"replica": self.name, "ok": ok, **self.counters, **self.broker.stats,
                               "rooms": rooms, "events": self.broker.events, "versions": VERSIONS})
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            response = ws.respond(status, body + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        if path != "/ws":
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None


async def serve(*, name: str, port: int, broker: NoBroker) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection and exit cleanly."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    replica = Replica(name, broker)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    await broker.start(replica.deliver)
    if isinstance(broker, RedisStreams):
        broker.on_gap = replica.gap
    async with ws_serve(replica.handle, "0.0.0.0", port, process_request=replica.process_request,
                        compression=None):
        log.info("ready: listening on :%d, broker %s", port, type(broker).__name__)
        try:
            await stop
        except asyncio.CancelledError:
            log.info("stopping on signal")
    await broker.stop()
