"""Socket.IO connection state recovery, counted per drop: did the server recover the session, how many
packets it replayed, how much of what the client missed they gave back, what they gave twice, what stayed
lost.

Pure: the link records each connection a client opens as a `Rejoin` (what its CONNECT carried,
whether the server's answer said `recovered`, the events that came before that answer: the replay); this
module matches each drop with the rejoin that brought its client back and counts against the History's
sends and receipts. A value that was not measured is None, never 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .history import History, Session


@dataclass(frozen=True)
class Rejoin:
    """One connection a client opened (its first too), as its CONNECT exchange went.

    `started`: the connection attempt began; `at`: the server's CONNECT answer came (or the attempt
    ended without one). `pid_sent`/`offset_sent`: the CONNECT carried the private session id and the
    offset of the last event received. `recovered`: the answer carried that same session id (None: no
    answer). `replayed`: the message ids of the events that came before the answer, in order (the server
    writes the packets it replays before its answer), the client's own messages included."""

    client: str
    started: float
    at: float
    pid_sent: bool
    offset_sent: bool
    recovered: bool | None
    replayed: tuple[str, ...] = ()
    #: the offset the CONNECT carried (None: none)
    offset: str | None = None


@dataclass(frozen=True)
class DropRecovery:
    """One dropped connection and how it came back.

    `missed`: (message, this client) pairs owed that the server had (acknowledged; else generated) from the
    moment the dropped connection was answered until the client was back, that neither reached it before it
    dropped nor came live on the next connection (a message still on its way): what only a replay could
    give; `filled`: of those, the ones the
    replay delivered; `duplicates`: replayed copies of pairs it already had (or had twice in one replay),
    and live copies, once it was back, of pairs the replay had just given it (not those of a message its
    sender wrote again, its acknowledgement lost with its own drop: the run's `duplicated` counts those);
    `lost`: missed pairs never delivered by the end of the run."""

    client: str
    closed: float
    back: float | None
    pid_sent: bool
    offset_sent: bool
    recovered: bool | None
    replayed: int
    missed: int
    filled: int
    duplicates: int
    lost: int

    @property
    def gap_filled(self) -> float | None:
        """Replayed ÷ missed; None when nothing was missed."""
        return self.filled / self.missed if self.missed else None


@dataclass(frozen=True)
class RecoveryTotals:
    drops: int
    back: int
    recovered: int
    unrecovered: int
    replayed: int
    missed: int
    filled: int
    duplicates: int
    lost: int

    @property
    def gap_filled(self) -> float | None:
        return self.filled / self.missed if self.missed else None


def _next_rejoin(rejoins: list[Rejoin], after: float) -> Rejoin | None:
    """The first rejoin begun after `after` that got the server's answer."""
    return next((r for r in rejoins if r.started >= after and r.recovered is not None), None)


def per_drop(h: History, rejoins: list[Rejoin]) -> list[DropRecovery]:
    """Every dropped connection of the run with what came of it, in order of the drops."""
    room_of = {c.name: c.room for c in h.clients}
    sessions: dict[str, list[Session]] = {}
    for s in sorted(h.sessions, key=lambda s: s.opened):
        sessions.setdefault(s.client, []).append(s)
    joined = {c: ss[0].opened for c, ss in sessions.items()}
    got: dict[tuple[str, str], list[float]] = {}
    for r in h.received:
        got.setdefault((r.id, r.client), []).append(r.at)
    by_client: dict[str, list[Rejoin]] = {}
    for rejoin in sorted(rejoins, key=lambda r: r.started):
        by_client.setdefault(rejoin.client, []).append(rejoin)
    sender_of = {m.id: m.sender for m in h.sent}
    writes = Counter(m.id for m in h.resent)
    # when the server had a message: its first acknowledgement (a message generated while its sender was
    # away goes out only once the sender is back), else when it was generated
    had: dict[str, float] = {}
    for a in h.acks:
        had[a.id] = min(a.at, had.get(a.id, a.at))
    out: list[DropRecovery] = []
    for s in sorted((s for s in h.sessions if s.closed is not None), key=lambda s: s.closed or 0.0):
        closed = s.closed
        assert closed is not None
        mine = by_client.get(s.client, [])
        j = _next_rejoin(mine, closed)
        back = j.at if j is not None else None
        until = back if back is not None else float("inf")
        # the connection that dropped was live from its CONNECT answer; the next one until it dropped
        start = max((r.at for r in mine if r.recovered is not None and r.at <= s.opened), default=s.opened)
        after = next((n for n in sessions.get(s.client, []) if n.opened >= until), None)
        live_until = float("inf") if after is None or after.closed is None else after.closed
        owed = [m.id for m in h.sent if m.sender != s.client and room_of.get(m.sender) == room_of.get(s.client)
                and joined.get(s.client, float("inf")) <= m.at and start <= had.get(m.id, m.at) < until]
        missed = {mid for mid in owed
                  if not any(t < closed or until <= t < live_until for t in got.get((mid, s.client), ()))}
        replayed = [mid for mid in (j.replayed if j is not None else ()) if sender_of.get(mid) != s.client]
        duplicates = 0
        if j is not None:
            for mid, in_replay in Counter(replayed).items():
                # the copies it should have: one, and one more for each time its sender wrote it again
                allowed = 1 + writes[mid]
                times = got.get((mid, s.client), ())
                before = sum(1 for t in times if t < j.started)
                live = sum(1 for t in times if t >= j.at)
                duplicates += max(0, before + in_replay + live - allowed) - max(0, before - allowed)
        out.append(DropRecovery(
            client=s.client, closed=closed, back=back,
            pid_sent=j.pid_sent if j is not None else False, offset_sent=j.offset_sent if j is not None else False,
            recovered=j.recovered if j is not None else None,
            replayed=len(j.replayed) if j is not None else 0,
            missed=len(missed), filled=len(missed & set(replayed)), duplicates=duplicates,
            lost=sum(1 for mid in missed if (mid, s.client) not in got)))
    return out


def totals(drops: list[DropRecovery]) -> RecoveryTotals:
    back = [d for d in drops if d.recovered is not None]
    return RecoveryTotals(
        drops=len(drops), back=len(back), recovered=sum(1 for d in back if d.recovered),
        unrecovered=sum(1 for d in back if not d.recovered), replayed=sum(d.replayed for d in drops),
        missed=sum(d.missed for d in drops), filled=sum(d.filled for d in drops),
        duplicates=sum(d.duplicates for d in drops), lost=sum(d.lost for d in drops))
