"""Room-delivery accounting over a History, for every protocol. Pure.

"Expected" has one meaning: a message is expected at every other client that was a member of the room
(the sender's room, when clients are spread over several) when it was sent. A client is a member from the
moment it first got into the room until the end of the run, across reconnects, and also after a drop it
never came back from: what it missed stays lost. A message a client was due to send and never generated
is counted too (`unsent`): it is expected at every other member and reaches none. Acknowledgement does not
decide expectation: an unacknowledged message is expected like any other, and counted apart (`unacked`).

Each (message, recipient) pair is delivered (once or more: the extra copies are duplicates) or lost, and
same-server or cross-server by the replicas the sender and the recipient were on at send time. A loss is
`trimmed` only when the message's sequence number lies inside a range the server reported trimmed to that
recipient; it is inside a fault's window when it was sent inside it, or when it was on its way to a
connection the fault cut (nothing its sender sent later had reached that connection before the cut).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .history import FaultEvent, History, Sent, Session

#: frames in flight when a fault starts or ends still belong to it
FAULT_MARGIN_S = 0.5
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
    #: copies to a client that joined after the message was sent (not expected, not a fault either)
    extra: int = 0
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
    trimmed: int = 0
    #: lost deliveries to clients that never dropped, and to clients that did
    lost_undisturbed: int = 0
    lost_dropped: int = 0
    max_gap_s: float = 0.0
    reconnects: int = 0
    windows: tuple[tuple[float, float], ...] = ()
    deaf_replicas: tuple[str, ...] = ()
    published_to_nobody: int = 0
    failover: Failover = field(default_factory=Failover)

    def percentile_ms(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

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


def fault_windows(history: History, margin: float = FAULT_MARGIN_S) -> list[tuple[float, float]]:
    """Each fault's window: from just before it was applied until it was healed, every client it
    disconnected was back, and every replica broker connection that broke during it worked again (each
    recovery paired with its own break, never any later "working" report), `margin` either side."""
    sessions = by_client(history.sessions)
    windows = []
    for f in history.faults:
        healed = f.healed if f.healed is not None else math.inf
        start = f.applied - margin
        end = healed
        broken: dict[tuple[str, str], float] = {}
        for e in sorted(history.broker_events, key=lambda e: e.at):
            key = (e.replica, e.part)
            if not e.working and start <= e.at <= healed + margin:
                broken.setdefault(key, e.at)
            elif e.working and key in broken:
                end = max(end, e.at)
                del broken[key]
        if broken:  # broke during the fault and never reported working again
            end = math.inf
        for client_sessions in sessions.values():
            for i, s in enumerate(client_sessions):
                if s.closed is not None and start <= s.closed <= healed + margin:
                    back = client_sessions[i + 1].opened if i + 1 < len(client_sessions) else math.inf
                    end = max(end, back)
        windows.append((start, end + margin))
    return windows


def _in_flight_when_cut(m: Sent, here: Session | None, windows: list[tuple[float, float]],
                        arrivals: Iterable[tuple[float, float]]) -> bool:
    """A message sent before a fault, owed to a connection the fault cut, that was still on its way: nothing
    its sender sent later reached that connection before the cut (one channel keeps a sender's order, so a
    later arrival means this one was skipped, not delayed). A loaded replica can lag past the window's margin;
    what it still held when it died is the fault's loss."""
    if here is None or here.closed is None or not any(lo <= here.closed <= hi for lo, hi in windows):
        return False
    return not any(sent > m.at and here.opened <= got <= here.closed for sent, got in arrivals)


def _failover(faults: list[FaultEvent], sessions: dict[str, list[Session]], missed: Counter[str]) -> Failover:
    kills = [f for f in faults if f.kind == KILL]
    on_killed = {c for f in kills for c, ss in sessions.items()
                 if (s := session_at(ss, f.applied)) is not None and s.replica == f.target}
    gaps: list[float] = []
    dropped: set[str] = set()
    never_back: set[str] = set()
    for client, ss in sessions.items():
        for i, s in enumerate(ss):
            if s.closed is None:
                continue
            dropped.add(client)
            back = ss[i + 1].opened if i + 1 < len(ss) else math.inf
            gaps.append(back - s.closed)
            if back == math.inf:
                never_back.add(client)
    return Failover(
        killed=tuple(f.target for f in kills), on_killed=len(on_killed), dropped=len(dropped),
        dropped_on_killed=len(dropped & on_killed), dropped_elsewhere=len(dropped - on_killed),
        reconnected=len(dropped - never_back), reconnect_max_s=max(gaps) if gaps else None,
        missed_while_away=sum(missed.values()))


def _deaf(probes: dict[str, object]) -> tuple[str, ...]:
    """Replicas with room members whose subscriber, as Redis sees it, lacks a channel (each holds its
    control channel and one per room)."""
    members, subs = probes.get("members"), probes.get("subscriptions")
    if not isinstance(members, dict) or not isinstance(subs, dict):
        return ()
    return tuple(sorted(r for r, rooms in members.items() if rooms and subs.get(r, 0) < rooms + 1))


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
    windows = fault_windows(h)
    # (receiver, sender) -> (sent at, first received at) of every message that arrived
    sent_at = {m.id: (m.sender, m.at) for m in h.sent}
    later_from: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (mid, client), at in first_at.items():
        if mid in sent_at:
            sender, when = sent_at[mid]
            later_from.setdefault((client, sender), []).append((when, at))
    joined_at = {c: ss[0].opened for c, ss in sessions.items()}
    trims: dict[str, list] = {}
    for resume in h.resumes:
        trims.setdefault(resume.client, []).append(resume)
    dropped = {c for c, ss in sessions.items() if any(s.closed is not None for s in ss)}
    room_of = {r.name: r.room for r in h.clients}

    n = Counter[str]()
    latencies: list[float] = []
    wanted: set[tuple[str, str]] = set()
    missed: Counter[str] = Counter()
    for m in h.sent:
        origin = session_at(sessions.get(m.sender, []), m.at)
        for client, ss in sessions.items():
            if client == m.sender or joined_at[client] > m.at or room_of.get(client) != room_of.get(m.sender):
                continue
            here = session_at(ss, m.at)
            key = (m.id, client)
            wanted.add(key)
            together = origin is not None and here is not None and here.replica == origin.replica
            side = "same" if together else "cross"
            n["expected"] += 1
            n[f"{side}_expected"] += 1
            copies_here = copies.get(key, 0)
            if copies_here:
                n["delivered"] += 1
                n[f"{side}_delivered"] += 1
                n["duplicated"] += copies_here - 1
                latencies.append((first_at[key] - m.at) * 1000.0)
                if here is None or not here.open_at(first_at[key]):
                    n["recovered"] += 1
                continue
            if here is None:
                missed[client] += 1
            seq = seq_of.get(m.id)
            if seq is not None and any(r.covers(seq) for r in trims.get(client, [])):
                n["trimmed"] += 1
            in_fault = any(lo <= m.at <= hi for lo, hi in windows) or _in_flight_when_cut(
                m, here, windows, later_from.get((client, m.sender), ()))
            n["lost_in_fault" if in_fault else "lost_outside_fault"] += 1
            n["lost_dropped" if client in dropped else "lost_undisturbed"] += 1

    sent_by = Counter(m.sender for m in h.sent)
    unsent = 0
    for record in h.clients:
        owed = max(0, record.due - sent_by.get(record.name, 0))
        unsent += owed
        others = sum(1 for c in sessions if c != record.name and room_of.get(c) == record.room)
        n["expected"] += owed * others
        n["lost_outside_fault"] += owed * others
        n["lost_undisturbed"] += owed * others

    senders = {m.id: m.sender for m in h.sent}
    unexpected = sum(c for (mid, client), c in copies.items() if senders.get(mid, client) == client)
    extra = sum(c for key, c in copies.items() if key not in wanted and senders.get(key[0], key[1]) != key[1])
    placement = {name: 0 for name in h.replicas}
    for ss in sessions.values():
        placement[ss[0].replica] = placement.get(ss[0].replica, 0) + 1
    gaps = [b.opened - a.closed for ss in sessions.values() for a, b in zip(ss, ss[1:]) if a.closed is not None]
    acked = {a.id for a in h.acks}
    nacked = set(h.nacked)
    return Accounting(
        sent=len(h.sent), unsent=unsent, expected=n["expected"], delivered=n["delivered"],
        lost=n["expected"] - n["delivered"], duplicated=n["duplicated"], unexpected=unexpected, extra=extra,
        same_expected=n["same_expected"], same_delivered=n["same_delivered"],
        cross_expected=n["cross_expected"], cross_delivered=n["cross_delivered"],
        latencies_ms=tuple(sorted(latencies)), placement=dict(sorted(placement.items())),
        clients=len(h.clients), joined=sum(1 for c in h.clients if c.joined),
        acked=len(acked), unacked=sum(1 for m in h.sent if m.id not in acked and m.id not in nacked),
        nacked=len(nacked), recovered=n["recovered"], lost_in_fault=n["lost_in_fault"],
        lost_outside_fault=n["lost_outside_fault"], trimmed=n["trimmed"],
        lost_undisturbed=n["lost_undisturbed"], lost_dropped=n["lost_dropped"],
        max_gap_s=max(gaps, default=0.0), reconnects=len(gaps), windows=tuple(windows),
        deaf_replicas=_deaf(h.probes), published_to_nobody=int(h.probes.get("published_to_nobody", 0)),
        failover=_failover(h.faults, sessions, missed),
    )
