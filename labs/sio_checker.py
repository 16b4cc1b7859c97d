"""Accounting over a Socket.IO run's history, and its verdict against the scenario's expectation. Pure.

Three questions, each from recorded facts only:
- **stickiness**: how many clients got into the room, how many HTTP 400 "unknown session" answers each
  client got (a poll that reached a server which never saw its session), which replica served each client
  (the server said so in its join ack) and how even that spread is;
- **room delivery**: for every message the server acknowledged, the expected recipients are the other
  clients in the room when it was sent; each is delivered, or lost, same-server or cross-server. A message
  never acknowledged has an unknown outcome (its replica may have died holding it) and is counted apart;
- **failover**: which clients were on a replica when it was killed, which dropped, how long each took to be
  back in the room, what it missed while away, and whether anyone who never dropped lost anything.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .checker import Accounting
from .history import Session
from .scenario import FaultKind, Metric
from .sio_history import SioHistory


@dataclass(frozen=True)
class Stickiness:
    requests: int = 0
    #: responses that were not 2xx/101, and requests that got no response at all
    http_errors: int = 0
    session_unknown: int = 0
    #: clients that made more than one polling request, and those of them that got a 400 "unknown session"
    pollers: int = 0
    pollers_with_400: int = 0
    errors_by_client: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Failover:
    killed: tuple[str, ...] = ()
    #: clients in a session on a replica at the moment it was killed
    on_killed: int = 0
    dropped: int = 0
    dropped_on_killed: int = 0
    dropped_elsewhere: int = 0
    reconnected: int = 0
    #: longest time from a drop to being back in the room (inf: someone never came back); None: no drop
    reconnect_max_s: float | None = None
    #: acknowledged messages sent while a dropped client was away, which it never got
    missed_while_away: int = 0


@dataclass(frozen=True)
class SioAccounting:
    clients: int
    joined: int
    #: replica -> clients whose first session it served (every replica listed, 0 included)
    placement: dict[str, int]
    stickiness: Stickiness
    room: Accounting
    failover: Failover
    unacked: int = 0
    #: copies that reached a client not expected to get them (it joined or rejoined as the message went out)
    extra: int = 0
    #: lost deliveries to clients that never dropped, and to clients that did (in flight at the drop)
    lost_undisturbed: int = 0
    lost_dropped: int = 0

    @property
    def replicas_used(self) -> int:
        return sum(1 for n in self.placement.values() if n)

    @property
    def placement_max_min(self) -> float | None:
        """Most-loaded over least-loaded replica; inf when a replica got no client; None with no clients."""
        counts = list(self.placement.values())
        if not counts or not sum(counts):
            return None
        return math.inf if min(counts) == 0 else max(counts) / min(counts)

    def metric(self, metric: Metric) -> float | None:
        """A metric's value; None when it is undefined (a ratio over nothing)."""
        s, f = self.stickiness, self.failover
        values: dict[Metric, float | None] = {
            Metric.HANDSHAKE_OK_RATIO: _ratio(self.joined, self.clients),
            Metric.SESSION_UNKNOWN: s.session_unknown,
            Metric.POLLERS_WITH_400_RATIO: _ratio(s.pollers_with_400, s.pollers),
            Metric.HTTP_ERRORS: s.http_errors,
            Metric.REPLICAS_USED: self.replicas_used,
            Metric.PLACEMENT_MAX_MIN: self.placement_max_min,
            Metric.UNACKED: self.unacked,
            Metric.DROPPED_ON_KILLED_RATIO: _ratio(f.dropped_on_killed, f.on_killed),
            Metric.DROPPED_ELSEWHERE: f.dropped_elsewhere if f.killed else None,
            Metric.RECONNECTED_RATIO: _ratio(f.reconnected, f.dropped),
            Metric.RECONNECT_MAX_S: f.reconnect_max_s,
            Metric.LOST_UNDISTURBED: self.lost_undisturbed,
        }
        if metric in values:
            return values[metric]
        return self.room.metric(metric)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _sessions_by_client(sessions: list[Session]) -> dict[str, list[Session]]:
    out: dict[str, list[Session]] = {}
    for s in sorted(sessions, key=lambda s: s.opened):
        out.setdefault(s.client, []).append(s)
    return out


def _open_at(sessions: list[Session], t: float) -> Session | None:
    return next((s for s in sessions if s.open_at(t)), None)


def stickiness(h: SioHistory) -> Stickiness:
    polls = Counter(e.client for e in h.http if e.polling)
    with_400 = {e.client for e in h.http if e.session_unknown}
    pollers = [c for c, n in polls.items() if n > 1]
    errors = Counter(e.client for e in h.http if not e.ok)
    return Stickiness(
        requests=len(h.http), http_errors=sum(errors.values()),
        session_unknown=sum(1 for e in h.http if e.session_unknown),
        pollers=len(pollers), pollers_with_400=sum(1 for c in pollers if c in with_400),
        errors_by_client=dict(sorted(errors.items())),
    )


def placement(h: SioHistory) -> dict[str, int]:
    """Clients per replica by the replica that acknowledged each client's first join."""
    out = {name: 0 for name in h.replicas}
    for sessions in _sessions_by_client(h.sessions).values():
        out[sessions[0].replica] = out.get(sessions[0].replica, 0) + 1
    return dict(sorted(out.items()))


def account(h: SioHistory) -> SioAccounting:
    by_client = _sessions_by_client(h.sessions)
    acked = {a.id for a in h.acks}
    sent_ids = {m.id: m for m in h.sent}
    copies = Counter((r.id, r.client) for r in h.received)
    first_at: dict[tuple[str, str], float] = {}
    for r in h.received:
        first_at[(r.id, r.client)] = min(r.at, first_at.get((r.id, r.client), r.at))
    dropped = {d.client for d in h.drops}

    expected = delivered = duplicated = lost_undisturbed = lost_dropped = 0
    same, cross = [0, 0], [0, 0]
    latencies: list[float] = []
    wanted: set[tuple[str, str]] = set()
    for m in h.sent:
        if m.id not in acked:
            continue
        origin = _open_at(by_client.get(m.sender, []), m.at)
        for client, sessions in by_client.items():
            here = _open_at(sessions, m.at) if client != m.sender else None
            if here is None:
                continue
            key = (m.id, client)
            wanted.add(key)
            expected += 1
            bucket = same if origin is not None and here.replica == origin.replica else cross
            bucket[0] += 1
            n = copies.get(key, 0)
            if n:
                delivered += 1
                bucket[1] += 1
                duplicated += n - 1
                latencies.append((first_at[key] - m.at) * 1000.0)
            elif client in dropped:
                lost_dropped += 1
            else:
                lost_undisturbed += 1
    unexpected = sum(n for (mid, client), n in copies.items()
                     if mid not in sent_ids or sent_ids[mid].sender == client)
    extra = sum(1 for key in copies if key not in wanted and key[0] in sent_ids
                and sent_ids[key[0]].sender != key[1])
    where = placement(h)
    room = Accounting(
        sent=len(h.sent), expected=expected, delivered=delivered, lost=expected - delivered,
        duplicated=duplicated, unexpected=unexpected, same_expected=same[0], same_delivered=same[1],
        cross_expected=cross[0], cross_delivered=cross[1], latencies_ms=tuple(sorted(latencies)),
        placement=where,
    )
    return SioAccounting(
        clients=len(h.clients), joined=sum(1 for c in h.clients if c.joined), placement=where,
        stickiness=stickiness(h), room=room, failover=failover(h, acked, copies),
        unacked=sum(1 for m in h.sent if m.id not in acked), extra=extra,
        lost_undisturbed=lost_undisturbed, lost_dropped=lost_dropped,
    )


def failover(h: SioHistory, acked: set[str], copies: Counter[tuple[str, str]]) -> Failover:
    """Who was on a killed replica, who dropped, how long until each was back, what each missed meanwhile."""
    by_client = _sessions_by_client(h.sessions)
    kills = [f for f in h.faults if f.kind == FaultKind.KILL_REPLICA.value]
    on_killed = {client for f in kills for client, sessions in by_client.items()
                 if (s := _open_at(sessions, f.applied)) is not None and s.replica == f.target}
    dropped = {d.client for d in h.drops}
    gaps: list[float] = []
    missed = 0
    for d in h.drops:
        back = next((s for s in by_client.get(d.client, []) if s.opened >= d.at), None)
        until = back.opened if back else math.inf
        gaps.append(until - d.at)
        missed += sum(1 for m in h.sent if m.id in acked and m.sender != d.client and d.at <= m.at < until
                      and (m.id, d.client) not in copies)
    return Failover(
        killed=tuple(f.target for f in kills), on_killed=len(on_killed), dropped=len(dropped),
        dropped_on_killed=len(dropped & on_killed), dropped_elsewhere=len(dropped - on_killed),
        reconnected=len(dropped - {d.client for d, gap in zip(h.drops, gaps) if gap == math.inf}),
        reconnect_max_s=max(gaps) if gaps else None,
        missed_while_away=missed,
    )
