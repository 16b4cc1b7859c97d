"""An asyncio WebSocket chat replica: clients join a room and every message reaches the room's other members.

Protocol (JSON text frames):
  connect   /ws?room=R&client=C[&last=SID&seq=N]   (resume after stream id SID, numbered N; streams only)
  server -> {"type": "welcome", "replica": NAME, "client": C, "room": R, "sid": SID?, "seq": N?}
  server -> {"type": "resume", "after": SID, "replayed": N, "trimmed": K, "trimmed_seqs": [LO, HI] | null}
            after a resume (the K entries numbered LO..HI, inclusive, that it missed are gone), and, with
            "after": "" and "replayed": 0, when this replica's own reader found entries LO..HI trimmed unread
  client -> {"id": MSG_ID, "ts": SEND_TIME?, "body": TEXT?}
            MSG_ID a string matching [A-Za-z0-9_-]{1,64} or a non-negative integer (relayed as a string),
            SEND_TIME a finite number, TEXT a string of at most 65536 characters; other keys are ignored
  server -> {"type": "ack", "id": MSG_ID, "sid": SID?, "seq": N?}  once the broker has it (with streams, the
            new entry's id and sequence number; none on a resend already added), or {"type": "nack", ...}
  server -> {"type": "msg", "id": MSG_ID, "sender": C, "origin": NAME, "room": R, "ts": SEND_TIME,
             "body": TEXT, "sid": SID?, "seq": N?}
  GET /        -> the chat page (chat.html), for a browser
  GET /healthz -> 200 when the broker answers, with this replica's counters and its resident memory
            (`rss_bytes`, from /proc/self/statm) as JSON (503 otherwise)

A bad frame closes its sender's connection, with a reason, and touches nobody else: a binary frame 1003,
a text frame that is not JSON 1007, JSON that is not a valid message 1008 (`bad_frames` in /healthz).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import ID_RE, InvalidMessage, Message, check_message, codec
from .brokers import NoBroker, PublishFailed, Replay
from .outbox import Outbox, text_frame
from .streams import sid_key

VERSIONS = {"python": sys.version.split()[0], "websockets": websockets.__version__}
SID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
log = logging.getLogger("wslab.app")


class BadFrame(Exception):
    """A frame the server refuses: close the sender's connection with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


def parse_frame(data: str | bytes) -> Message:
    """A client's frame as a Message, or BadFrame: binary 1003, text that is not JSON 1007, JSON that is
    not a message 1008. Close reasons stay short (a close frame carries at most 123 bytes of them)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise BadFrame(1003, "binary frames are not accepted; send JSON text")
    try:
        obj = codec.loads(data)
    except (json.JSONDecodeError, codec.NotJSON):
        raise BadFrame(1007, "text frame is not valid JSON") from None
    except RecursionError:
        raise BadFrame(1008, "JSON nested too deeply") from None
    except ValueError:  # an integer too long for int() (sys.get_int_max_str_digits)
        raise BadFrame(1008, "JSON number too long") from None
    try:
        return check_message(obj)
    except InvalidMessage as exc:
        raise BadFrame(1008, str(exc)) from None


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
        self.counters = {"connections": 0, "received": 0, "delivered_frames": 0, "skipped_duplicates": 0,
                         "bad_frames": 0}
        self.bad_closes: Counter[str] = Counter()  # close code -> bad frames closed with it
        self.outbox = Outbox()

    def deliver(self, room: str, frame: str) -> None:
        """Fan a frame out to this replica's members of `room`, except its sender."""
        members = self.rooms.get(room)
        if not members:
            return
        decoded = codec.loads(frame)
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
        self.counters["delivered_frames"] += self.outbox.add(targets, text_frame(frame.encode()))

    def deliver_from(self, room: str, sender: str, frame: bytes) -> None:
        """Fan a frame (its JSON bytes, as the broker carried them) out to this replica's members of `room`,
        except `sender`: no decode (a broker without stream ids, which names the sender beside the frame)."""
        members = self.rooms.get(room)
        if not members:
            return
        targets = [member.ws for client, member in members.items() if client != sender]
        self.counters["delivered_frames"] += self.outbox.add(targets, text_frame(frame))

    async def resume(self, room: str, client: str, member: Member, after: str, after_seq: int, *,
                     replay: bool) -> None:
        """Replay what the client missed after `after` (when asked), then release what arrived live
        meanwhile: each entry at most once, in stream order."""
        member.upto = sid_key(after)
        missed = await self.broker.replay(room, after, after_seq) if replay else Replay([])
        member.replaying = False
        for frame in missed.frames + member.held:
            self.deliver_one(member, client, frame)
        member.held.clear()
        if replay:
            self.outbox.write_now(member.ws)
            await member.ws.send(json.dumps({"type": "resume", "after": after, "replayed": len(missed.frames),
                                             "trimmed": missed.trimmed_count,
                                             "trimmed_seqs": _seqs(missed.trimmed)}))

    def gap(self, room: str, lo: int, hi: int) -> None:
        """Tell the room's local members that entries lo..hi they were owed were trimmed unread."""
        notice = json.dumps({"type": "resume", "after": "", "replayed": 0, "trimmed": hi - lo + 1,
                             "trimmed_seqs": [lo, hi]})
        self.outbox.add([m.ws for m in self.rooms.get(room, {}).values()], text_frame(notice.encode()))

    def deliver_one(self, member: Member, client: str, frame: str) -> None:
        decoded = json.loads(frame)
        key = sid_key(decoded["sid"])
        if decoded["sender"] != client and key > member.upto:
            self.counters["delivered_frames"] += self.outbox.add([member.ws], text_frame(frame.encode()))
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
        # with a durable broker, hold live frames until the client's starting point is known
        member = Member(ws, replaying=broker.durable)
        self.rooms[room][client] = member
        self.counters["connections"] += 1
        try:
            await broker.join(room)
            welcome = {"type": "welcome", "replica": self.name, "client": client, "room": room}
            if broker.durable:
                # A new client starts at the history's current end; a returning one where it left off.
                after, after_seq = (last, int(seq)) if last else await broker.end_id(room)
                self.outbox.write_now(ws)
                await ws.send(json.dumps({**welcome, "sid": after, "seq": after_seq}))
                await self.resume(room, client, member, after, after_seq, replay=bool(last))
            else:
                self.outbox.write_now(ws)
                await ws.send(json.dumps(welcome))
            async for raw in ws:
                try:
                    msg = parse_frame(raw)
                except BadFrame as bad:
                    await self.refuse(ws, room, client, bad)
                    return
                self.counters["received"] += 1
                frame = {"type": "msg", "id": msg.id, "sender": client, "origin": self.name,
                         "room": room, "ts": msg.ts, "body": msg.body}
                try:
                    reply = {"type": "ack", "id": msg.id, **await broker.publish(room, frame)}
                except PublishFailed:
                    reply = {"type": "nack", "id": msg.id}
                # through the outbox: with the deliveries bound for this client in one write
                self.outbox.add([ws], text_frame(codec.dumps(reply)))
        except ConnectionClosed:
            pass
        finally:
            del self.rooms[room][client]
            if not self.rooms[room]:
                del self.rooms[room]
            await self.broker.leave(room)

    async def refuse(self, ws: ServerConnection, room: str, client: str, bad: BadFrame) -> None:
        """Close a client that sent a bad frame, and say so in one log line."""
        self.counters["bad_frames"] += 1
        self.bad_closes[str(bad.code)] += 1
        log.warning("bad frame from %s in room %s: %s; closing with %d", client, room, bad.reason, bad.code)
        await ws.close(bad.code, bad.reason)

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            ok = await self.broker.healthy()
            rooms = {room: len(members) for room, members in self.rooms.items()}
            body = json.dumps({"replica": self.name, "ok": ok, **self.counters, **self.broker.stats,
                               "bad_frame_closes": dict(self.bad_closes), "rooms": rooms,
                               "events": self.broker.events, "versions": VERSIONS, "rss_bytes": rss_bytes()})
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            response = ws.respond(status, body + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        if path == "/":
            return chat_page(ws)
        if path != "/ws":
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None


def rss_bytes() -> int | None:
    """This process's resident set size (the second field of /proc/self/statm, in pages); None off Linux."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


#: the chat page (labs/app/chat.html): static, read once
PAGE = (Path(__file__).parent / "chat.html").read_text(encoding="utf-8")


def chat_page(ws: ServerConnection) -> Response:
    """GET / -> the chat page, which opens its WebSocket back through nginx to /ws."""
    response = ws.respond(HTTPStatus.OK, PAGE)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response


def _seqs(trimmed: tuple[int, int] | None) -> list[int] | None:
    return None if trimmed is None else [trimmed[0], trimmed[1]]


async def serve(*, name: str, port: int, broker: NoBroker) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection and exit cleanly."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    replica = Replica(name, broker)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    broker.on_gap = replica.gap
    broker.deliver_from = replica.deliver_from
    await broker.start(replica.deliver)
    # backlog: asyncio's default of 100 pending connections refuses bursts of connects (nginx then answers
    # 502 and takes the replica out of rotation for 10 s)
    async with ws_serve(replica.handle, "0.0.0.0", port, process_request=replica.process_request,
                        compression=None, backlog=4096):
        log.info("ready: listening on :%d, broker %s", port, type(broker).__name__)
        try:
            await stop
        except asyncio.CancelledError:
            log.info("stopping on signal")
    await broker.stop()
