"""An asyncio WebSocket chat replica: clients join a room and every message reaches the room's other members.

Protocol (JSON text frames):
  connect   /ws?room=R&client=C
  server -> {"type": "welcome", "replica": NAME, "client": C, "room": R}
  client -> {"id": MSG_ID, "ts": SEND_TIME}
  server -> {"type": "msg", "id": MSG_ID, "sender": C, "origin": NAME, "room": R, "ts": SEND_TIME}
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
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from .brokers import NoBroker

VERSIONS = {"python": sys.version.split()[0], "websockets": websockets.__version__}
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
log = logging.getLogger("wslab.app")


class Replica:
    def __init__(self, name: str, broker: NoBroker) -> None:
        self.name = name
        self.broker = broker
        self.rooms: dict[str, dict[str, ServerConnection]] = defaultdict(dict)
        self.counters = {"connections": 0, "received": 0, "delivered_frames": 0}

    def deliver(self, room: str, frame: str) -> None:
        """Fan a frame out to this replica's members of `room`, except its sender."""
        members = self.rooms.get(room)
        if not members:
            return
        sender = json.loads(frame)["sender"]
        targets = [ws for client, ws in members.items() if client != sender]
        broadcast(targets, frame)
        self.counters["delivered_frames"] += len(targets)

    async def handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        room, client = query.get("room", [""])[0], query.get("client", [""])[0]
        if not (ID_RE.match(room) and ID_RE.match(client)):
            await ws.close(1008, "room and client must match [A-Za-z0-9_-]{1,64}")
            return
        if client in self.rooms[room]:
            await ws.close(1008, f"client {client} is already in room {room} here")
            return
        self.rooms[room][client] = ws
        self.counters["connections"] += 1
        try:
            await self.broker.join(room)
            await ws.send(json.dumps({"type": "welcome", "replica": self.name, "client": client, "room": room}))
            async for raw in ws:
                msg = json.loads(raw)
                self.counters["received"] += 1
                frame = json.dumps({"type": "msg", "id": str(msg["id"]), "sender": client,
                                    "origin": self.name, "room": room, "ts": msg["ts"]})
                await self.broker.publish(room, frame)
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
            body = json.dumps({"replica": self.name, "ok": ok, **self.counters, **self.broker.stats,
                               "versions": VERSIONS})
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
    async with ws_serve(replica.handle, "0.0.0.0", port, process_request=replica.process_request,
                        compression=None):
        log.info("ready: listening on :%d, broker %s", port, type(broker).__name__)
        try:
            await stop
        except asyncio.CancelledError:
            log.info("stopping on signal")
    await broker.stop()
