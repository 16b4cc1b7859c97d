"""What the Socket.IO clients observed, as plain records: the Socket.IO checker's only input.

Sessions, sends and receives are the WebSocket workload's own records (`labs.history`); on top of them a
Socket.IO run keeps every HTTP exchange of every client (so a 400 "unknown session" is counted, not
swallowed), the server's acknowledgements, and the drops a fault caused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .history import FaultEvent, Received, Sent, Session

#: how Engine.IO servers word a poll for a session they do not hold: python-engineio, then Node's engine.io
UNKNOWN_SESSION_MARKERS = ("Invalid session", "Session ID unknown")


@dataclass(frozen=True)
class HttpEvent:
    """One HTTP request a client made through nginx, and what came back.

    kind: `handshake` (Engine.IO open, no session id yet), `poll` (GET with the session id), `send` (POST
    with it), `websocket` (a WebSocket connection or upgrade). status None: no response at all.
    """

    client: str
    at: float
    method: str
    kind: str
    status: int | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and (200 <= self.status < 300 or self.status == 101)

    @property
    def session_unknown(self) -> bool:
        """HTTP 400 because the server that got the request never saw this session (no stickiness)."""
        return self.status == 400 and any(m in self.detail for m in UNKNOWN_SESSION_MARKERS)

    @property
    def polling(self) -> bool:
        return self.kind in {"handshake", "poll", "send"}


@dataclass(frozen=True)
class ClientRecord:
    """One scripted client: the address it stands for, and whether its first connection got into the room."""

    name: str
    #: the X-Forwarded-For address it sends ("" = none: nginx sees the host's own connection)
    source: str
    joined: bool
    error: str = ""


@dataclass(frozen=True)
class Ack:
    """The server relayed message `id` (emitted it to the room, and with Redis published it)."""

    id: str
    at: float
    replica: str


@dataclass(frozen=True)
class Drop:
    """A client's connection ended while the run was going on (not closed by the harness)."""

    client: str
    replica: str
    at: float
    reason: str


@dataclass
class SioHistory:
    replicas: list[str] = field(default_factory=list)
    clients: list[ClientRecord] = field(default_factory=list)
    http: list[HttpEvent] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
