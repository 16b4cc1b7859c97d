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


@dataclass
class History:
    sessions: list[Session] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
