"""Room-delivery accounting over a History, for every protocol. Pure.

"Expected" has one meaning: a message is expected at every other client that was a member of the room
(the sender's room, when clients are spread over several) when it was sent. A client is a member from the
moment it first got into the room until the end of the run, across reconnects, and also after a drop it
never came back from: what it missed stays lost. A message a client was due to send and never generated
is counted too (`unsent`): it is expected at every other member and reaches none. Acknowledgement does not
decide expectation: an unacknowledged message is expected like any other, and counted apart (`unacked`).

Each (message, recipient) pair is delivered (once or more: the extra copies are duplicates) or lost, and
same-server or cross-server by the replicas the sender and the recipient were on at send time (a client
that was away then: the one it dropped from). Every other copy is judged too: of a client's own or an
unknown message (`unexpected`), to a client of another room (`misrouted`), to a client of the room that
was not a member when it was sent (`not_member`).

A loss is in a fault only when its path crossed a part the fault reached, while it was reached
(labs/accounting/reach.py); every other loss is outside, however close in time. It is `trimmed` only when
the server told the recipient its sequence number was trimmed and the durable log, asked at the end,
no longer holds it (`trim_refuted`: the log still starts at or before it); when the log could not be
asked, `trimmed` is unknown.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from . import changes
from .history import FaultEvent, History, Resume, Sent, Session
from .reach import (
    EVERYWHERE,
    RECEIVING_PARTS,
    SENDING_PARTS,
    Reach,
    Span,
    client,
    reach_of,
)

KILL = "kill-replica"


def percentile(values: list[float] | tuple[float, ...], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of sorted `values`, interpolating linearly between closest ranks:
    q = 0 is the minimum, q = 1 the maximum. None for no values."""
    if not values:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Failover:
    """Who was on a killed replica, who dropped, how long until each was back, what each missed."""

    killed: tuple[str, ...] = ()
    on_killed: int = 0
    dropped: int = 0
    dropped_on_killed: int = 0
    dropped_elsewhere: int = 0
    reconnected: int = 0
    #: longest time from a drop to being back in the room (inf: someone never came back); None: no drop
    reconnect_max_s: float | None = None
    #: messages sent while a dropped client was away, which it never got
    missed_while_away: int = 0


@dataclass(frozen=True)
class Accounting:
    sent: int = 0
    #: messages clients were due to send and never generated (each is lost at every other member)
    unsent: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    #: copies of unknown messages, or of a client's own message
    unexpected: int = 0
    #: copies to a client in another room than the sender's
    misrouted: int = 0
    #: copies to a client of the sender's room that was not a member when the message was sent
    not_member: int = 0
    same_expected: int = 0
    same_delivered: int = 0
    cross_expected: int = 0
    cross_delivered: int = 0
    latencies_ms: tuple[float, ...] = ()
    #: replica -> clients whose first session it served (every replica listed, 0 included)
    placement: dict[str, int] = field(default_factory=dict)
    clients: int = 0
    joined: int = 0
    acked: int = 0
    unacked: int = 0
    nacked: int = 0
    #: delivered only after the recipient reconnected (a replay), not on the connection it had at send time
    recovered: int = 0
    lost_in_fault: int = 0
    lost_outside_fault: int = 0
    #: None: the durable log could not be asked whether what the server said was trimmed is gone
    trimmed: int | None = 0
    #: losses the server said were trimmed while the log still held them
    trim_refuted: int = 0
    #: lost deliveries to clients that never dropped, and to clients that did
    lost_undisturbed: int = 0
    lost_dropped: int = 0
    #: longest time a dropped client took to be back (None: nobody came back)
    max_gap_s: float | None = None
    reconnects: int = 0
    #: connections that closed before the run ended, and clients whose last one did
    drops: int = 0
    never_back: int = 0
    #: recoveries past their fault's allowance (or never), and the longest time after a heal one took
    late_recoveries: int = 0
    recovery_max_s: float | None = None
    #: per fault, the first and last moment it reached anything
    windows: tuple[tuple[float, float], ...] = ()
    #: every part each fault reached, and when
    reached: tuple[Span, ...] = ()
    #: None: not measured (a replica did not say where its members are)
    deaf_replicas: tuple[str, ...] | None = ()
    published_to_nobody: int | None = 0
    failover: Failover = field(default_factory=Failover)
    #: after a topology change: the clients that came back, and how many of them on another replica
    remap: changes.Remap = field(default_factory=changes.Remap)
    #: sorted latencies of the messages sent while a topology change was under way
    change_latencies_ms: tuple[float, ...] = ()
    #: topology changes in the run
    change_count: int = 0

    def percentile_ms(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    @property
    def p99_in_change_ms(self) -> float | None:
        """p99 latency of what was sent during a topology change; None without a change (or a delivery)."""
        return percentile(self.change_latencies_ms, 0.99)

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


def by_client(sessions: list[Session]) -> dict[str, list[Session]]:
    out: dict[str, list[Session]] = {}
    for s in sorted(sessions, key=lambda s: s.opened):
        out.setdefault(s.client, []).append(s)
    return out


def session_at(sessions: list[Session], t: float) -> Session | None:
    return next((s for s in sessions if s.open_at(t)), None)


def _failover(faults: list[FaultEvent], sessions: dict[str, list[Session]], missed: Counter[str]) -> Failover:
    kills = [f for f in faults if f.kind == KILL]
    on_killed = {c for f in kills for c, ss in sessions.items()
                 if (s := session_at(ss, f.applied)) is not None and s.replica == f.target}
    gaps: list[float] = []
    dropped: set[str] = set()
    never_back: set[str] = set()
    for name, ss in sessions.items():
        for i, s in enumerate(ss):
            if s.closed is None:
                continue
            dropped.add(name)
            back = ss[i + 1].opened if i + 1 < len(ss) else math.inf
            gaps.append(back - s.closed)
            if back == math.inf:
                never_back.add(name)
    return Failover(
        killed=tuple(f.target for f in kills), on_killed=len(on_killed), dropped=len(dropped),
        dropped_on_killed=len(dropped & on_killed), dropped_elsewhere=len(dropped - on_killed),
        reconnected=len(dropped - never_back), reconnect_max_s=max(gaps) if gaps else None,
        missed_while_away=sum(missed.values()))



def _deaf(probes: dict[str, object]) -> tuple[str, ...] | None:
    """Replicas with room members whose subscriber, as Redis sees it, lacks a channel (each holds its
    control channel and one per room). None when it was not measured: no probe, or a replica that did not
    say how many rooms it has members in."""
    members, subs = probes.get("members"), probes.get("subscriptions")
    if not isinstance(members, dict) or not isinstance(subs, dict) or None in members.values():
        return None
    return tuple(sorted(r for r, rooms in members.items() if rooms and subs.get(r, 0) < rooms + 1))


def _count(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def last_session(sessions: list[Session], t: float) -> Session | None:
    """The connection open at `t`, else the last one opened before it (the one a client dropped from)."""
    here = session_at(sessions, t)
    if here is not None:
        return here
    before = [s for s in sessions if s.opened <= t]
    return before[-1] if before else None


def _direction(part: str) -> tuple[bool, bool]:
    """Whether a broken broker connection `part` stops what its replica sends, and what it receives."""
    if part in SENDING_PARTS:
        return True, False
    if part in RECEIVING_PARTS:
        return False, True
    return True, True


@dataclass(frozen=True)
class _Pair:
    """One expected delivery: message `m` owed to `client`; where both ends were at send time."""

    m: Sent
    client: str
    origin: Session | None
    here: Session | None
    live: Session | None


def account(h: History) -> Accounting:
    sessions = by_client(h.sessions)
    copies = Counter((r.id, r.client) for r in h.received)
    first_at: dict[tuple[str, str], float] = {}
    seq_of: dict[str, int] = {a.id: a.seq for a in h.acks if a.seq is not None}
    for r in h.received:
        key = (r.id, r.client)
        first_at[key] = min(r.at, first_at.get(key, r.at))
        if r.seq is not None:
            seq_of.setdefault(r.id, r.seq)
    joined_at = {c: ss[0].opened for c, ss in sessions.items()}
    room_of = {r.name: r.room for r in h.clients}
    acked = {a.id for a in h.acks}
    nacked = set(h.nacked)

    pairs: list[_Pair] = []
    for m in h.sent:
        origin = last_session(sessions.get(m.sender, []), m.at)
        for name, ss in sessions.items():
            if name == m.sender or joined_at[name] > m.at or room_of.get(name) != room_of.get(m.sender):
                continue
            pairs.append(_Pair(m, name, origin, last_session(ss, m.at), session_at(ss, m.at)))

    # deliveries that arrived on the connection the recipient had at send time: (sent at, from, to replica)
    on_time = [(p.m.at, p.origin.replica if p.origin else "", p.live.replica) for p in pairs
               if p.live is not None and (p.m.id, p.client) in first_at and p.live.open_at(first_at[(p.m.id, p.client)])]

    def stopped(replica: str, part: str, t1: float, t2: float, reached: frozenset[str]) -> bool:
        sends, receives = _direction(part)
        return not any(t1 < at < t2 and ((sends and src == replica) or (receives and dst == replica))
                       and src not in reached and dst not in reached for at, src, dst in on_time)

    reached = reach_of(h, sessions, stopped)
    # (receiver, sender) -> (sent at, first received at) of every message that arrived
    later_from: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for p in pairs:
        if (p.m.id, p.client) in first_at:
            later_from.setdefault((p.client, p.m.sender), []).append((p.m.at, first_at[(p.m.id, p.client)]))
    trims: dict[str, list[Resume]] = {}
    for resume in h.resumes:
        trims.setdefault(resume.client, []).append(resume)
    log_first = h.probes.get("stream_first_seq")
    dropped = {c for c, ss in sessions.items() if any(s.closed is not None for s in ss)}

    n = Counter[str]()
    latencies: list[float] = []
    missed: Counter[str] = Counter()
    for p in pairs:
        m, key = p.m, (p.m.id, p.client)
        together = p.origin is not None and p.here is not None and p.here.replica == p.origin.replica
        side = "same" if together else "cross"
        n["expected"] += 1
        n[f"{side}_expected"] += 1
        if key in copies:
            n["delivered"] += 1
            n[f"{side}_delivered"] += 1
            n["duplicated"] += copies[key] - 1
            latencies.append((first_at[key] - m.at) * 1000.0)
            if p.live is None or not p.live.open_at(first_at[key]):
                n["recovered"] += 1
            continue
        if p.live is None:
            missed[p.client] += 1
        seq = seq_of.get(m.id)
        if seq is not None and any(r.covers(seq) for r in trims.get(p.client, [])):
            first = log_first.get(room_of.get(m.sender, "")) if isinstance(log_first, dict) else None
            n["trimmed" if isinstance(first, int) and seq < first else
              "trim_unchecked" if first is None else "trim_refuted"] += 1
        n["lost_in_fault" if _in_fault(p, reached, later_from, acked) else "lost_outside_fault"] += 1
        n["lost_dropped" if p.client in dropped else "lost_undisturbed"] += 1

    sent_by = Counter(m.sender for m in h.sent)
    unsent = 0
    for record in h.clients:
        owed = max(0, record.due - sent_by.get(record.name, 0))
        unsent += owed
        others = sum(1 for c in sessions if c != record.name and room_of.get(c) == record.room)
        n["expected"] += owed * others
        n["lost_outside_fault"] += owed * others
        n["lost_undisturbed"] += owed * others

    wanted = {(p.m.id, p.client) for p in pairs}
    senders = {m.id: m.sender for m in h.sent}
    for (mid, name), c in copies.items():
        sender = senders.get(mid)
        if sender is None or sender == name:
            n["unexpected"] += c
        elif (mid, name) not in wanted:
            n["misrouted" if room_of.get(name) != room_of.get(sender) else "not_member"] += c
    placement = {name: 0 for name in h.replicas}
    for ss in sessions.values():
        placement[ss[0].replica] = placement.get(ss[0].replica, 0) + 1
    gaps = [b.opened - a.closed for ss in sessions.values() for a, b in zip(ss, ss[1:]) if a.closed is not None]
    return Accounting(
        sent=len(h.sent), unsent=unsent, expected=n["expected"], delivered=n["delivered"],
        lost=n["expected"] - n["delivered"], duplicated=n["duplicated"], unexpected=n["unexpected"],
        misrouted=n["misrouted"], not_member=n["not_member"],
        same_expected=n["same_expected"], same_delivered=n["same_delivered"],
        cross_expected=n["cross_expected"], cross_delivered=n["cross_delivered"],
        latencies_ms=tuple(sorted(latencies)), placement=dict(sorted(placement.items())),
        clients=len(h.clients), joined=sum(1 for c in h.clients if c.joined),
        acked=len(acked), unacked=sum(1 for m in h.sent if m.id not in acked and m.id not in nacked),
        nacked=len(nacked), recovered=n["recovered"], lost_in_fault=n["lost_in_fault"],
        lost_outside_fault=n["lost_outside_fault"],
        trimmed=None if n["trim_unchecked"] else n["trimmed"], trim_refuted=n["trim_refuted"],
        lost_undisturbed=n["lost_undisturbed"], lost_dropped=n["lost_dropped"],
        max_gap_s=max(gaps) if gaps else None, reconnects=len(gaps),
        drops=sum(1 for s in h.sessions if s.closed is not None),
        never_back=sum(1 for ss in sessions.values() if ss[-1].closed is not None),
        late_recoveries=reached.late, recovery_max_s=reached.recovery_max_s,
        windows=reached.windows(len(h.faults)), reached=reached.spans,
        deaf_replicas=_deaf(h.probes), published_to_nobody=_count(h.probes.get("published_to_nobody")),
        failover=_failover(h.faults, sessions, missed),
        remap=changes.remapped(h), change_latencies_ms=changes.latencies_in_change_ms(h),
        change_count=len(changes.changes(h)),
    )


def _in_fault(p: _Pair, reached: Reach, later_from: dict[tuple[str, str], list[tuple[float, float]]],
              acked: set[str]) -> bool:
    """Whether a lost delivery's path crossed a part a fault reached while it was reached: the sender's
    connection and replica at send time (or the ones it dropped from), the recipient's, the broker, the
    load balancer. Also lost in the fault: a message still on its way when a fault cut the connection it
    was on — the recipient's (nothing its sender sent later had reached it before the cut: one channel
    keeps a sender's order, so a later arrival means this one was skipped, not delayed), or the sender's,
    before the server acknowledged it. A loaded replica can lag past the margin; what it still held when a
    fault cut it is the fault's loss."""
    m = p.m
    path = set(EVERYWHERE) | {client(m.sender), client(p.client)}
    path |= {s.replica for s in (p.origin, p.here) if s is not None}
    if reached.at(path, m.at):
        return True
    live = p.live
    if live is not None and live.closed is not None and reached.at(
            set(EVERYWHERE) | {live.replica, client(p.client)}, live.closed):
        arrivals = later_from.get((p.client, m.sender), ())
        if not any(sent > m.at and live.opened <= got <= live.closed for sent, got in arrivals):
            return True
    origin = p.origin
    return (origin is not None and origin.open_at(m.at) and origin.closed is not None and m.id not in acked
            and reached.at(set(EVERYWHERE) | {origin.replica, client(m.sender)}, origin.closed))
