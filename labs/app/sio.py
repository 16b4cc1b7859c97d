"""A Socket.IO chat replica (python-socketio on aiohttp): the seed article's events, one room per name.

    python -m wslab_app.sio --name app-1 --port 8000 --broker none|redis-pubsub|redis-streams --redis URL
                            [--maxlen N] [--max-disconnection-duration S]

Events, the lab's shapes:
  client -> "join-room" {"room": R, "client": C}   ack {"replica": NAME, "room": R, "client": C}
  client -> "chat-message" {"id": ID, "ts": T}       ack {"replica": NAME, "id": ID} once relayed
  server -> "new-message" {"id", "sender", "origin": NAME, "room", "ts"} to the room's other members
and the seed article's, exactly as its Node server takes them:
  client -> "join-room" R                            ack {"replica": NAME, "room": R} (if asked for)
  client -> "chat-message" R, MESSAGE                ack {"replica": NAME} once relayed
  server -> "new-message" MESSAGE, as given, to the whole room R, the sender included
Anything else (wrong arguments, a bad room or id) gets the ack {"error": REASON}, one log line, and counts
in `bad_events`; it never raises into python-socketio.
  GET /        -> the chat page (chat-sio.html); GET /socket.io.min.js -> the client script it loads
  GET /healthz -> 200 with counters once the manager works (503 before)

Every HTTP response names the replica in X-Wslab-Replica (nginx's open-source cookie stickiness reads it),
and the join ack names it too, so the harness measures placement from the server. Broker `none` keeps
rooms in this process (a room message never reaches another replica); `redis-pubsub` uses
python-socketio's AsyncRedisManager, which relays every emit through one Redis Pub/Sub channel;
`redis-streams` adds socket.io's connection state recovery (recovery_server.py): every emit goes through one
Redis stream (capped at --maxlen entries), and a client that comes back within --max-disconnection-duration
seconds gets its sid, rooms and the events it missed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import engineio.payload
import socketio
from aiohttp import web

from . import ID_RE, InvalidMessage, check_message, run
from .recovery_manager import StreamManager
from .recovery_server import RecoveringServer

REPLICA_HEADER = "X-Wslab-Replica"
#: python-engineio refuses a polling POST of more than `Payload.max_decode_packets` packets (16 by
#: default, a guard against floods): "Too many packets in payload", and every message in it is dropped
#: without an ack. A client that comes back after a drop sends what it queued meanwhile in one POST (here
#: up to ~30 messages), so a replica takes this many. Process-wide: it is a class attribute.
MAX_DECODE_PACKETS = 1024
engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets, MAX_DECODE_PACKETS)
BROKERS = ("none", "redis-pubsub", "redis-streams")
VERSIONS = {"python": sys.version.split()[0], "python-socketio": metadata.version("python-socketio"),
            "python-engineio": metadata.version("python-engineio"), "aiohttp": aiohttp.__version__}
log = logging.getLogger("wslab.sio")


class ConfirmedRedisManager(socketio.AsyncRedisManager):
    """AsyncRedisManager that knows when its subscription works.

    The stock manager subscribes in a background task and says nothing when it is done; an emit published
    before that is gone (Pub/Sub is at-most-once). This one publishes a probe to its own channel until its
    own listener sees it, and only then reports healthy, so the harness never sends into a deaf replica.
    """

    def __init__(self, url: str, *, name: str = "") -> None:
        # every connection of the manager names this replica in Redis's CLIENT LIST
        super().__init__(url, redis_options={"client_name": name} if name else None)
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


class BadEvent(Exception):
    """An event the replica refuses; the text goes back in the error ack."""


Handler = Callable[..., Awaitable[dict[str, str]]]


def guarded(handler: Handler) -> Handler:
    """Answer a refused or failed event with {"error": ...} and one log line, never a traceback: an exception
    raised in a handler reaches python-socketio, which logs it and sends no ack at all."""

    @functools.wraps(handler)
    async def wrapper(self: Replica, sid: str, *args: Any) -> dict[str, str]:
        event = handler.__name__.replace("_", "-")
        try:
            return await handler(self, sid, *args)
        except BadEvent as exc:
            self.counters["bad_events"] += 1
            log.warning("bad %s event from %s: %s", event, sid, exc)
            return {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - whatever happened, the client gets an answer
            self.counters["failed_events"] += 1
            log.warning("%s event from %s failed: %r", event, sid, exc)
            return {"error": f"{event} failed: {type(exc).__name__}"}

    return wrapper


def _room(value: Any) -> str:
    if not (isinstance(value, str) and ID_RE.match(value)):
        raise BadEvent("room must be a string matching [A-Za-z0-9_-]{1,64}")
    return value


class Replica:
    """The event handlers and counters of one replica."""

    def __init__(self, name: str, broker: str, redis_url: str, *, maxlen: int = 100_000,
                 max_disconnection: float = 120.0) -> None:
        self.name = name
        self.manager = ConfirmedRedisManager(redis_url, name=name) if broker == "redis-pubsub" else None
        self.recovery: RecoveringServer | None = None
        if broker == "redis-streams":
            self.sio = self.recovery = RecoveringServer(StreamManager(redis_url, name=name, maxlen=maxlen),
                                                        max_disconnection=max_disconnection, async_mode="aiohttp")
        else:
            self.sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=self.manager)
        self.counters: Counter[str] = Counter(bad_events=0)
        self.sio.on("connect", self.connect)
        self.sio.on("disconnect", self.disconnect)
        self.sio.on("join-room", self.join_room)
        self.sio.on("chat-message", self.chat_message)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.counters["connections"] += 1

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        self.counters["disconnects"] += 1

    @guarded
    async def join_room(self, sid: str, *args: Any) -> dict[str, str]:
        """`join-room` R (the article) or {"room": R, "client": C} (the lab)."""
        if len(args) != 1:
            raise BadEvent(f"join-room takes one argument, got {len(args)}")
        (data,) = args
        if isinstance(data, str):
            room = _room(data)
            await self.sio.enter_room(sid, room)
            self.counters["joins"] += 1
            return {"replica": self.name, "room": room}
        if not isinstance(data, dict):
            raise BadEvent("join-room takes a room name or {room, client}")
        room, client = _room(data.get("room")), data.get("client")
        if not (isinstance(client, str) and ID_RE.match(client)):
            raise BadEvent("client must be a string matching [A-Za-z0-9_-]{1,64}")
        await self.sio.enter_room(sid, room)
        await self.sio.save_session(sid, {"room": room, "client": client})
        self.counters["joins"] += 1
        return {"replica": self.name, "room": room, "client": client}

    @guarded
    async def chat_message(self, sid: str, *args: Any) -> dict[str, str]:
        """`chat-message` R, MESSAGE (the article: to the whole room, as given) or {"id", "ts"} (the lab:
        to the sender's room but the sender, with who sent it and through which replica)."""
        if len(args) == 2:
            room, message = _room(args[0]), args[1]
            self.counters["received"] += 1
            await self.sio.emit("new-message", message, room=room)
            return {"replica": self.name}
        if len(args) != 1:
            raise BadEvent(f"chat-message takes (room, message) or one {{id, ts}}, got {len(args)} arguments")
        session = await self.sio.get_session(sid)
        if "client" not in session:
            raise BadEvent("join a room with {room, client} first, then send {id, ts}")
        try:
            msg = check_message(args[0])
        except InvalidMessage as exc:
            raise BadEvent(str(exc)) from None
        self.counters["received"] += 1
        frame = {"id": msg.id, "sender": session["client"], "origin": self.name,
                 "room": session["room"], "ts": msg.ts}
        # Returns once the frame is queued for this replica's members and (with Redis) published.
        await self.sio.emit("new-message", frame, room=session["room"], skip_sid=sid)
        return {"replica": self.name, "id": frame["id"]}

    async def healthz(self, request: web.Request) -> web.Response:
        manager = self.recovery.stream if self.recovery else self.manager
        ok = manager is None or manager.listening.is_set()
        body = {"replica": self.name, "ok": ok, "app": "socketio",
                "manager": type(manager).__name__ if manager else "in-memory",
                **self.counters, **({"recovery": self.recovery.stats()} if self.recovery else {}),
                "versions": VERSIONS}
        return web.json_response(body, status=200 if ok else 503)

    async def name_response(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[REPLICA_HEADER] = self.name

    async def close_all(self, timeout: float) -> None:
        """Tell every client goodbye, for at most `timeout` s: a polling client that is already gone never
        collects its close packet, and Engine.IO would wait for it until the ping timeout (45 s). With
        recovery, their sessions are kept: they come back to another replica."""
        if self.recovery:
            self.recovery.draining = True
        if not self.sio.eio.sockets:
            return
        try:
            await asyncio.wait_for(self.sio.eio.disconnect(), timeout)
        except TimeoutError:
            log.info("some clients did not collect their close packet within %gs", timeout)

    async def start_manager(self) -> None:
        """Start the Redis manager now (not on the first client) and wait until it hears itself."""
        if self.recovery:
            await self.recovery.start()
            log.info("stream manager reading %s from %s", "sio:stream", self.recovery.stream.position)
            return
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
        client = redis_asyncio.Redis.from_url(self.manager.redis_url, client_name=self.name)
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


#: the chat page (chat-sio.html) and the socket.io client script it loads, which the image build copies
#: from the npm package socket.io-client beside this module (absent outside the image: 404)
PAGE = Path(__file__).parent / "chat-sio.html"
CLIENT_SCRIPT = "socket.io.min.js"


async def chat_page(request: web.Request) -> web.StreamResponse:
    """GET / -> the chat page, with the article's events."""
    return web.FileResponse(PAGE, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


async def client_script(request: web.Request) -> web.StreamResponse:
    """GET /socket.io.min.js -> the vendored socket.io client."""
    path = PAGE.parent / CLIENT_SCRIPT
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{CLIENT_SCRIPT} is vendored at image build; not in this copy\n")
    return web.FileResponse(path, headers={"Content-Type": "text/javascript; charset=utf-8"})


async def serve(*, name: str, port: int, broker: str, redis_url: str, maxlen: int = 100_000,
                max_disconnection: float = 120.0) -> None:
    """Serve until SIGTERM or SIGINT, then disconnect every client and exit cleanly."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    replica = Replica(name, broker, redis_url, maxlen=maxlen, max_disconnection=max_disconnection)
    app = web.Application()
    replica.sio.attach(app)
    app.router.add_get("/healthz", replica.healthz)
    app.router.add_get("/", chat_page)
    app.router.add_get(f"/{CLIENT_SCRIPT}", client_script)
    app.on_response_prepare.append(replica.name_response)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "0.0.0.0", port)
        await site.start()
        await replica.start_manager()
        log.info("ready: listening on :%d, manager %s", port, broker)
        try:
            await stop
        except asyncio.CancelledError:
            log.info("stopping on signal")
        # listen no more first: a client that comes back now is refused at once, and nginx tries the next
        # replica, instead of landing here again in the middle of the shutdown
        await site.stop()
        await replica.close_all(timeout=1.0)
        await replica.sio.shutdown()
        if replica.recovery:
            await replica.recovery.close()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="wslab_app.sio", description="one Socket.IO chat replica")
    parser.add_argument("--name", required=True, help="this replica's name, reported to clients")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--broker", choices=BROKERS, default="none",
                        help="none: in-memory rooms; redis-pubsub: socketio.AsyncRedisManager; "
                             "redis-streams: one stream, with connection state recovery")
    parser.add_argument("--redis", default="redis://redis:6379/0", help="Redis URL for the Redis manager")
    parser.add_argument("--maxlen", type=bounded(int, 1, 10_000_000), default=100_000,
                        help="approximate MAXLEN of the stream (redis-streams)")
    parser.add_argument("--max-disconnection-duration", type=bounded(float, 1.0, 86_400.0), default=120.0,
                        help="seconds a disconnected client's session is kept (redis-streams)")
    args = parser.parse_args()
    run(serve(name=args.name, port=args.port, broker=args.broker, redis_url=args.redis, maxlen=args.maxlen,
              max_disconnection=args.max_disconnection_duration))


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, within [low, high]."""
    def convert(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not within {low:g}..{high:g}")
        return value

    return convert


if __name__ == "__main__":
    main()
