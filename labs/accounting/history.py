"""What a workload observed, as plain records: the checker's only input.

One History for every protocol. Times are the host's monotonic clock (containers share it, so a replica's
broker events fit in). A protocol adds its own records in a subclass (Socket.IO: every HTTP exchange).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..scenario.model import DEFAULT_RECOVERY_S


@dataclass(frozen=True)
class ClientRecord:
    """One scripted client: whether its first connection got into the room, and how many messages it was
    due to send (what it never sent stays counted)."""

    name: str
    joined: bool
    due: int = 0
    #: the X-Forwarded-For address it sends ("" = none: nginx sees the host's own connection)
    source: str = ""
    error: str = ""
    #: the room it joined ("" in runs recorded before rooms: every client in the one room)
    room: str = ""


@dataclass(frozen=True)
class Session:
    """One connection of one client, from the moment the server said it was in the room until it closed.
    `closed` None: still open when the harness ended the run."""

    client: str
    replica: str
    opened: float
    closed: float | None = None
    #: the close code it ended with (1001: the server went away; 1006: cut without a close frame); None: not
    #: known, or still open
    code: int | None = None

    def open_at(self, t: float) -> bool:
        return self.opened <= t and (self.closed is None or t < self.closed)


@dataclass(frozen=True)
class Sent:
    """A message the client generated at `at` (sent then, or queued while it was reconnecting)."""

    id: str
    sender: str
    at: float


@dataclass(frozen=True)
class Ack:
    """The server has message `id` (its broker took it). `seq`: the entry's number in a durable log."""

    id: str
    at: float
    replica: str = ""
    seq: int | None = None


@dataclass(frozen=True)
class Received:
    id: str
    client: str
    at: float
    origin: str = ""
    seq: int | None = None



@dataclass(frozen=True)
class FaultEvent:
    """A fault as it happened: applied at `applied`, healed at `healed` (None: never healed). `reaches`: the
    parts it reached (replicas, `client:<name>`, `broker`, `lb`), when the harness named them (a node
    fault: what ran there); empty: as its kind says (labs/accounting/reach.py). `recovery_s`: the declared
    allowance after the heal."""

    kind: str
    target: str
    applied: float
    healed: float | None = None
    reaches: tuple[str, ...] = ()
    recovery_s: float = DEFAULT_RECOVERY_S


@dataclass(frozen=True)
class Resume:
    """The server told a client that entries it was owed are gone: sequence numbers `first`..`last`
    (inclusive) were trimmed before it could read them. `replayed`: entries it was given back instead."""

    client: str
    at: float
    replayed: int = 0
    first: int | None = None
    last: int | None = None

    def covers(self, seq: int) -> bool:
        return self.first is not None and self.last is not None and self.first <= seq <= self.last


@dataclass(frozen=True)
class BrokerEvent:
    """A replica's broker connection (`part`: publisher, subscriber, reader…) broke or worked again."""

    replica: str
    at: float
    part: str
    working: bool


@dataclass
class History:
    replicas: list[str] = field(default_factory=list)
    clients: list[ClientRecord] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    #: messages their sender wrote again on a new connection, no acknowledgement having come on the old
    #: one (`at`: when written again): a copy that had got through is delivered twice, by the sender
    resent: list[Sent] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    #: messages the replica gave up on (its broker failed to take them): an unknown outcome
    nacked: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    broker_events: list[BrokerEvent] = field(default_factory=list)
    #: what Redis and the replicas reported at the end: `members` {replica: rooms with members},
    #: `subscriptions` {replica: channels Redis says its subscriber holds}, `published_to_nobody`
    probes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
