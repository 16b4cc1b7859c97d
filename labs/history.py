"""What a workload observed, as plain records: the checker's only input."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Session:
    """One connection of one client: open from the welcome until it closed (None: still open at the end)."""

    client: str
    replica: str
    opened: float
    closed: float | None = None

    def open_at(self, t: float) -> bool:
        return self.opened <= t and (self.closed is None or t < self.closed)


@dataclass(frozen=True)
class Sent:
    id: str
    sender: str
    at: float


@dataclass(frozen=True)
class Received:
    id: str
    client: str
    at: float
    origin: str


@dataclass(frozen=True)
class FaultEvent:
    """A fault as it happened: applied at `applied`, healed at `healed` (None: never healed)."""

    kind: str
    target: str
    applied: float
    healed: float | None = None


@dataclass(frozen=True)
class Resume:
    """A reconnected client was replayed `replayed` entries; `trimmed`: some it missed were trimmed away."""

    client: str
    at: float
    replayed: int
    trimmed: bool


@dataclass
class History:
    sessions: list[Session] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    #: messages the replica gave up on (its broker failed to take them)
    nacked: list[str] = field(default_factory=list)
    #: what Redis and the replicas reported at the end (subscriber counts, publishes to nobody)
    probes: dict[str, int] = field(default_factory=dict)
    #: (replica, time, part, working): when a replica's broker connection broke and recovered
    broker_events: list[tuple[str, float, str, bool]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
