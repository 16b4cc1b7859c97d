"""A Socket.IO chat replica (python-socketio on aiohttp): the seed article's events, one room per name.

    python -m wslab_app.sio --name app-1 --port 8000 --broker none|redis-pubsub --redis URL

Events:
  client -> "join-room" {"room": R, "client": C}   ack {"replica": NAME, "room": R, "client": C}
  client -> "chat-message" {"id": ID, "ts": T}       ack {"replica": NAME, "id": ID} once relayed
  server -> "new-message" {"id", "sender", "origin": NAME, "room", "ts"} to the room's other members
  GET /healthz -> 200 with counters once the manager works (503 before)

Every HTTP response names the replica in X-Wslab-Replica (nginx's open-source cookie stickiness reads it),
and the join ack names it too, so the harness measures placement from the server. Broker `none` keeps
rooms in this process (a room message never reaches another replica); `redis-pubsub` uses
python-socketio's AsyncRedisManager, which relays every emit through one Redis Pub/Sub channel.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
import uuid
from collections import Counter
from importlib import metadata
from typing import Any, AsyncIterator

import aiohttp
import socketio
from aiohttp import web

from . import run

REPLICA_HEADER = "X-Wslab-Replica"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BROKERS = ("none", "redis-pubsub")
VERSIONS = {"python": sys.version.split()[0], "python-socketio": metadata.version("python-socketio"),
            "python-engineio": metadata.version("python-engineio"), "aiohttp": aiohttp.__version__}
log = logging.getLogger("wslab.sio")


class ConfirmedRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager that knows when its subscription works.

    The stock manager subscribes in a background task and says nothing when it is done; an emit published
    before that is gone (Pub/Sub is at-most-once). This one publishes a probe to its own channel until its
    own listener sees it, and only then reports healthy, so the harness never sends into a deaf replica.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.token = uuid.uuid4().hex
        self.listening = asyncio.Event()

    async def _listen(self) -> AsyncIterator[Any]:
        async for data in super()._listen():
            if not self.listening.is_set() and self.token.encode() in (data if isinstance(data, bytes)
                                                                         else str(data).encode()):
                self.listening.set()
                continue
            yield data

    async def confirm(self, timeout: float = 30.0) -> None:
        """Publish the probe every 50 ms until it comes back, or raise after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.listening.is_set():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no Redis subscription after {timeout:g}s")
            await self._publish({"method": "wslab-probe", "host_id": self.host_id, "token": self.token})
            try:
                await asyncio.wait_for(self.listening.wait(), 0.05)
            except TimeoutError:
                pass


class Replica:
    """The event handlers and counters of one replica."""

    def __init__(self, name: str, broker: str, redis_url: str) -> None:
        self.name = name
        self.manager = ConfirmedRedisManager(redis_url) if broker == "redis-pubsub" else None
        self.sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=self.manager)
        self.counters: Counter[str] = Counter()
        self.sio.on("connect", self.connect)
        self.sio.on("disconnect", self.disconnect)
        self.sio.on("join-room", self.join_room)
        self.sio.on("chat-message", self.chat_message)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.counters["connections"] += 1

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        self.counters["disconnects"] += 1

    async def join_room(self, sid: str, data: Any) -> dict[str, str]:
        room, client = (data or {}).get("room", ""), (data or {}).get("client", "")
        if not (isinstance(room, str) and ID_RE.match(room) and isinstance(client, str) and ID_RE.match(client)):
            return {"error": "room and client must match [A-Za-z0-9_-]{1,64}"}
        await self.sio.enter_room(sid, room)
        await self.sio.save_session(sid, {"room": room, "client": client})
        self.counters["joins"] += 1
        return {"replica": self.name, "room": room, "client": client}

    async def chat_message(self, sid: str, data: Any) -> dict[str, str]:
        session = await self.sio.get_session(sid)
        if "room" not in session or not isinstance(data, dict) or "id" not in data:
            return {"error": "join a room first, then send {id, ts}"}
        self.counters["received"] += 1
        frame = {"id": str(data["id"]), "sender": session["client"], "origin": self.name,
                 "room": session["room"], "ts": data.get("ts")}
        # Returns once the frame is queued for this replica's members and (with Redis) published.
        await self.sio.emit("new-message", frame, room=session["room"], skip_sid=sid)
        return {"replica": self.name, "id": frame["id"]}

    async def healthz(self, request: web.Request) -> web.Response:
        ok = self.manager is None or self.manager.listening.is_set()
        body = {"replica": self.name, "ok": ok, "app": "socketio",
                "manager": type(self.manager).__name__ if self.manager else "in-memory",
                **self.counters, "versions": VERSIONS}
        return web.json_response(body, status=200 if ok else 503)

    async def name_response(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[REPLICA_HEADER] = self.name

    async def close_all(self, timeout: float) -> None:
        """Tell every client goodbye, for at most `timeout` s: a polling client that is already gone never
        collects its close packet, and Engine.IO would wait for it until the ping timeout (45 s)."""
        if not self.sio.eio.sockets:
            return
        try:
            await asyncio.wait_for(self.sio.eio.disconnect(), timeout)
        except TimeoutError:
            log.info("some clients did not collect their close packet within %gs", timeout)

    async def start_manager(self) -> None:
        """Start the Redis manager now (not on the first client) and wait until it hears itself."""
        if self.manager is None:
            return
        await self._await_redis()
        # The server starts its manager on the first connection unless told it already did.
        self.sio.manager_initialized = True
        self.manager.initialize()
        await self.manager.confirm()
        log.info("redis manager subscribed to channel %r", self.manager.channel)

    async def _await_redis(self, timeout: float = 30.0) -> None:
        """Redis may start after this replica: retry PING for `timeout` s (the manager's own retry waits 1 s+)."""
        import redis.asyncio as redis_asyncio
        import redis.exceptions

        assert self.manager is not None
        client = redis_asyncio.Redis.from_url(self.manager.redis_url)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, redis.exceptions.ConnectionError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()


async def serve(*, name: str, port: int, broker: str, redis_url: str) -> None:
    """Serve until SIGTERM or SIGINT, then disconnect every client and exit cleanly."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    replica = Replica(name, broker, redis_url)
    app = web.Application()
    replica.sio.attach(app)
    app.router.add_get("/healthz", replica.healthz)
    app.on_response_prepare.append(replica.name_response)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()
        await replica.start_manager()
        log.info("ready: listening on :%d, manager %s", port, broker)
        try:
            await stop
        except asyncio.CancelledError:
            log.info("stopping on signal")
        await replica.close_all(timeout=1.0)
        await replica.sio.shutdown()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="wslab_app.sio", description="one Socket.IO chat replica")
    parser.add_argument("--name", required=True, help="this replica's name, reported to clients")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--broker", choices=BROKERS, default="none",
                        help="none: in-memory rooms; redis-pubsub: socketio.AsyncRedisManager")
    parser.add_argument("--redis", default="redis://redis:6379/0", help="Redis URL for the Redis manager")
    args = parser.parse_args()
    run(serve(name=args.name, port=args.port, broker=args.broker, redis_url=args.redis))


if __name__ == "__main__":
    main()
