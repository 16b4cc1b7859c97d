"""What a topology change (a deploy: scale-out, scale-in, a rolling restart, nginx reloaded) did to the
clients. Pure.

- Remapped: of the clients that reconnected after a change cut their connection, those whose new
  connection went to another replica than the one they had. A consistent hash moves about 1/(N+1) of them
  when a server is added; a plain hash most; a replica taken away moves all of its own.
- Latency in a change: how long the messages sent while a change was under way took to arrive.
- Close codes: how the connections a change cut ended (1001, going away: the replica closed them; 1006: cut
  without a close frame, as nginx's old workers do when their shutdown timeout expires).

A change cut a connection when the connection closed between just before the change was applied and just
after it ended (`FAULT_MARGIN_S` either side, as the fault windows of reach.py); each closed connection
counts once, however many changes' windows it falls in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scenario import TOPOLOGY_CHANGES
from .history import FaultEvent, History, Session
from .reach import FAULT_MARGIN_S, end_of_run

#: the fault kinds that are topology changes, as a History names them
CHANGES = frozenset(kind.value for kind in TOPOLOGY_CHANGES)


@dataclass(frozen=True)
class Remap:
    """Connections a change cut that were followed by another one, and how many of those went to another
    replica."""

    reconnected: int = 0
    moved: int = 0

    @property
    def ratio(self) -> float | None:
        """moved / reconnected; None when no client came back after a change (nothing to compare)."""
        return self.moved / self.reconnected if self.reconnected else None


def changes(h: History) -> list[FaultEvent]:
    return [f for f in h.faults if f.kind in CHANGES]


def windows(h: History, margin: float = 0.0) -> list[tuple[float, float]]:
    """When each change was under way (a change never ended: until the end of the run), widened by `margin`."""
    last = end_of_run(h)
    return [(f.applied - margin, (f.healed if f.healed is not None else last) + margin) for f in changes(h)]


def remapped(h: History) -> Remap:
    """Each connection a change cut and the one its client opened next: on another replica or not."""
    spans = windows(h, FAULT_MARGIN_S)
    by_client: dict[str, list[Session]] = {}
    for s in sorted(h.sessions, key=lambda s: s.opened):
        by_client.setdefault(s.client, []).append(s)
    reconnected = moved = 0
    for ss in by_client.values():
        for before, after in zip(ss, ss[1:]):
            closed = before.closed
            if closed is None or not any(lo <= closed <= hi for lo, hi in spans):
                continue
            reconnected += 1
            moved += after.replica != before.replica
    return Remap(reconnected, moved)


def close_codes(h: History) -> dict[int | None, int]:
    """How the connections a change cut ended: close code -> connections (None: not known)."""
    spans = windows(h, FAULT_MARGIN_S)
    out: dict[int | None, int] = {}
    for s in h.sessions:
        if s.closed is not None and any(lo <= s.closed <= hi for lo, hi in spans):
            out[s.code] = out.get(s.code, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def latencies_in_change_ms(h: History) -> tuple[float, ...]:
    """Sorted, the delivery latency of every message sent while a change was under way, to each other
    client that got it (its first copy)."""
    spans = windows(h)
    sent = {m.id: m for m in h.sent if any(lo <= m.at <= hi for lo, hi in spans)}
    first: dict[tuple[str, str], float] = {}
    for r in h.received:
        m = sent.get(r.id)
        if m is None or r.client == m.sender:
            continue
        key = (r.id, r.client)
        first[key] = min(r.at, first.get(key, r.at))
    return tuple(sorted((at - sent[mid].at) * 1000.0 for (mid, _), at in first.items()))
