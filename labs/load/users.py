"""The locustfile of a load step: a locust User per protocol, all in one room, sending on a steady schedule.

locust runs on gevent, so the users are synchronous clients (websockets' sans-I/O protocol over a gevent
socket for the lab's WebSocket protocol, labs/load/wire.py; python-socketio's Client for Socket.IO) that
yield to gevent on every socket call.

A session of steps, coordinated through files in `--lab-dir` (the bench that started locust waits on them):
  1. each user connects, joins the room, and writes `joined/<name>` (or, failing, `users/0/<name>.json`);
  2. for step n = 1, 2, … it waits for `go-<n>.json` ({"start": T0, "stop": T1, "rate": R} on the host's
     monotonic clock, which every process on the machine shares), then sends R messages/s from T0 to T1,
     each stamped with the monotonic time it was sent and numbered `<user>-<n>-<k>`;
  3. it reads until nothing arrived for `QUIET_S` after T1 (at most `--lab-drain` s), writes that step's
     tally to `users/<n>/<name>.json`, and waits for the next step, until the `end` file appears.
Latency is receive time minus the payload's stamp: into locust's stats (request "deliver") and into the
user's HdrHistogram; acknowledgements go into locust's stats as "ack".
"""

from __future__ import annotations

import itertools
import json
import os
import time
import zlib
from pathlib import Path
from typing import Any

import gevent
import socketio
from locust import User, events, task
from locust.exception import StopUser

from labs.load.tally import Tally
from labs.load.wire import Connection

QUIET_S = 0.5
GO_POLL_S = 0.01
#: a send later than this after its scheduled moment counts as late (the generator could not keep up)
LATE_S = 0.010
_names = itertools.count(1)


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--lab-dir", required=True, help="where users write joined/, users/ and read go.json")
    parser.add_argument("--lab-host", default="127.0.0.1", help="nginx's address")
    parser.add_argument("--lab-port", type=int, required=True, help="nginx's port at that address")
    parser.add_argument("--lab-room", default="load", help="the room every user joins")
    parser.add_argument("--lab-payload", type=int, default=0, help="body characters per message")
    parser.add_argument("--lab-drain", type=float, default=5.0, help="longest wait for deliveries after stop")


@events.report_to_master.add_listener
def _final_report(client_id: str, data: dict[str, Any], **kwargs: Any) -> None:
    """A worker's first stats report after the session ended carries its last samples: say so, so that the
    session stops locust only once locust's own figures are complete (its master waits only 0.5 s)."""
    directory = _lab_dir
    if directory is not None and (directory / "end").exists():
        (directory / "final").mkdir(exist_ok=True)
        (directory / "final" / str(os.getpid())).touch()


_lab_dir: Path | None = None


@events.init.add_listener
def _remember_dir(environment: Any, **kwargs: Any) -> None:
    global _lab_dir
    _lab_dir = Path(environment.parsed_options.lab_dir)


class ChatUser(User):
    """What both protocols share: the step's script. A subclass supplies connect/send/close."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        self.dir = Path(opts.lab_dir)
        self.host, self.port, self.room = opts.lab_host, opts.lab_port, opts.lab_room
        self.body, self.drain = "x" * opts.lab_payload, opts.lab_drain
        self.tally = Tally(f"u{os.getpid()}n{next(_names)}")
        self.sent_at: dict[str, float] = {}
        self.last_activity = 0.0
        self.step = 0
        self.done = False

    # -- what the protocol reports ----------------------------------------------------------------------

    def delivered(self, frame: dict[str, Any], size: int) -> None:
        now = time.monotonic()
        self.last_activity = now
        try:
            sender, step, seq = str(frame["sender"]), *(int(n) for n in str(frame["id"]).rsplit("-", 2)[1:])
            latency_s = now - float(frame["ts"])
        except (KeyError, ValueError, IndexError, TypeError):
            return  # not a load message (another client in the room); the bench does not count it
        if step != self.step:
            self.tally.stale += 1  # a straggler from an earlier step, after that step's report
            return
        self.tally.received(sender, seq, int(latency_s * 1e6))
        self.environment.events.request.fire(request_type="WS", name="deliver", response_time=latency_s * 1000,
                                             response_length=size, exception=None, context={})

    def acked(self, msg_id: str) -> None:
        now = time.monotonic()
        self.last_activity = now
        started = self.sent_at.pop(msg_id, None)
        if started is not None:
            self.tally.acked += 1
            self.environment.events.request.fire(request_type="WS", name="ack", response_time=(now - started) * 1000,
                                                 response_length=0, exception=None, context={})

    def closed(self, reason: str) -> None:
        if not self.done:
            self.tally.dropped = True
            self.tally.error = self.tally.error or reason[:200]

    # -- the script -------------------------------------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.tally.replica = self.connect()
        except Exception as exc:  # noqa: BLE001 - any failure to join is this user's result, not a crash
            self.tally.error = f"{type(exc).__name__}: {exc}"[:200]
            self._report(0)
            raise StopUser() from None
        (self.dir / "joined").mkdir(exist_ok=True)
        (self.dir / "joined" / self.tally.name).write_text(self.tally.replica)

    @task
    def steps(self) -> None:
        """Step after step, each when its go file appears, until the `end` file does."""
        n = 1
        while (go := self._await_go(n)) is not None:
            self.step = n
            self.tally = Tally(self.tally.name, replica=self.tally.replica, dropped=self.tally.dropped,
                               error=self.tally.error)
            self.sent_at.clear()
            self._send(go["start"], go["stop"], go["rate"])
            self.last_activity = max(self.last_activity, time.monotonic())
            deadline = time.monotonic() + self.drain
            while time.monotonic() < deadline and time.monotonic() - self.last_activity < QUIET_S:
                gevent.sleep(0.05)
            self._report(n)
            n += 1
        self.done = True
        self.close()
        raise StopUser()

    def _send(self, start: float, stop: float, rate: float) -> None:
        interval = 1.0 / rate
        # users start at different offsets within one interval, so the room's sends are spread evenly
        offset = (zlib.crc32(self.tally.name.encode()) % 1000) / 1000 * interval
        for k in range(1, round((stop - start) * rate) + 1):  # exactly rate x seconds messages
            if self.tally.dropped:
                return
            due = start + offset + (k - 1) * interval
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            elif -wait > LATE_S:
                self.tally.late_sends += 1
            msg_id = f"{self.tally.name}-{self.step}-{k}"
            self.sent_at[msg_id] = time.monotonic()
            self.tally.sent += 1
            try:
                self.send(msg_id, time.monotonic(), self.body)
            except Exception as exc:  # noqa: BLE001 - a send on a dropped connection ends this user's sending
                self.closed(f"send failed: {type(exc).__name__}: {exc}")

    def _await_go(self, n: int) -> dict[str, float] | None:
        go, end = self.dir / f"go-{n}.json", self.dir / "end"
        while not go.exists():
            if end.exists():
                return None
            gevent.sleep(GO_POLL_S)
        return json.loads(go.read_text())

    def _report(self, n: int) -> None:
        directory = self.dir / "users" / str(n)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.tally.name}.json"
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(self.tally.to_dict()))
        partial.rename(target)  # the bench never reads half a file

    # -- what a protocol supplies -------------------------------------------------------------------------

    def connect(self) -> str:
        raise NotImplementedError

    def send(self, msg_id: str, ts: float, body: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class WebSocketUser(ChatUser):
    """The lab's WebSocket protocol (labs/app/server.py): /ws?room=R&client=C, JSON text frames."""

    def connect(self) -> str:
        url = f"ws://{self.host}:{self.port}/ws?room={self.room}&client={self.tally.name}"
        self.ws = Connection(url, timeout=10)
        welcome = json.loads(self.ws.recv_first(timeout=10))
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"expected a welcome, got {welcome!r}"[:200])
        self.reader = gevent.spawn(self._read)
        return str(welcome["replica"])

    def _read(self) -> None:
        try:
            self.ws.run(self._frame)
        except Exception as exc:  # noqa: BLE001 - the connection ended; say how
            self.closed(f"{type(exc).__name__}: {exc}")

    def _frame(self, raw: str) -> None:
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "msg":
            self.delivered(frame, len(raw))
        elif kind == "ack":
            self.acked(str(frame["id"]))

    def send(self, msg_id: str, ts: float, body: str) -> None:
        self.ws.send(json.dumps({"id": msg_id, "ts": ts, "body": body} if body else {"id": msg_id, "ts": ts}))

    def close(self) -> None:
        self.ws.close()
        self.reader.kill(block=False)


class SocketIOUser(ChatUser):
    """The lab's Socket.IO events (labs/app/sio.py): join-room {room, client}, chat-message {id, ts} with an
    acknowledgement, new-message to the room's other members. WebSocket transport only: a load user needs
    no stickiness."""

    def connect(self) -> str:
        # a program, not a browser: no Origin header (the replica checks a browser's Origin against its Host)
        self.sio = socketio.Client(reconnection=False, websocket_extra_options={"suppress_origin": True})
        self.sio.on("new-message", lambda frame: self.delivered(frame, 0))
        self.sio.on("disconnect", lambda *reason: self.closed(f"disconnected: {reason}"))
        self.sio.connect(f"http://{self.host}:{self.port}", transports=["websocket"], wait_timeout=10)
        ack = self.sio.call("join-room", {"room": self.room, "client": self.tally.name}, timeout=10)
        if not isinstance(ack, dict) or "replica" not in ack:
            raise ConnectionError(f"join-room refused: {ack!r}"[:200])
        return str(ack["replica"])

    def send(self, msg_id: str, ts: float, body: str) -> None:
        def on_ack(ack: Any = None) -> None:
            if isinstance(ack, dict) and "error" not in ack:
                self.acked(msg_id)

        self.sio.emit("chat-message", {"id": msg_id, "ts": ts}, callback=on_ack)

    def close(self) -> None:
        self.sio.disconnect()
