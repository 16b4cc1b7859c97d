"""Message accounting over a recorded History, and the verdict against a scenario's expectation. Pure.

For every message, the expected recipients are the other clients connected when it was sent. Each
(message, recipient) pair is delivered (once or more: the extra copies are duplicates) or lost, and is
same-server or cross-server by the replicas the sender and recipient were on at send time. A frame no one
expected (an unknown id, the sender itself, a client that was not connected) is unexpected.
"""

from __future__ import annotations

import enum
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from .history import History, Session
from .scenario import Bound, Metric

#: frames in flight when a fault starts or ends still belong to it
FAULT_MARGIN_S = 0.5
#: a recovery reported later than this after the heal is not the fault's any more
RECOVERY_LIMIT_S = 30.0


@dataclass(frozen=True)
class Accounting:
    sent: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    same_expected: int
    same_delivered: int
    cross_expected: int
    cross_delivered: int
    latencies_ms: tuple[float, ...] = ()
    placement: dict[str, int] = field(default_factory=dict)
    #: delivered only after the recipient reconnected (a replay), not on the connection it had at send time
    recovered: int = 0
    lost_in_fault: int = 0
    lost_outside_fault: int = 0
    #: lost because the recipient resumed after the stream had trimmed what it missed
    trimmed: int = 0
    #: the longest time any client spent disconnected between two sessions, in seconds
    max_gap_s: float = 0.0
    reconnects: int = 0
    windows: tuple[tuple[float, float], ...] = ()
    #: replicas with room members but no subscription to the room's channel (PubSub), at the end
    deaf_replicas: int = 0
    #: publishes Redis said reached 0 subscribers: certain loss for everyone
    published_to_nobody: int = 0
    #: messages whose sender was told the broker gave up on them (delivered or not: an unknown outcome)
    nacked: int = 0

    def metric(self, metric: Metric) -> float | None:
        """A metric's value; None when it is undefined (a ratio over nothing expected)."""
        ratio = lambda num, den: num / den if den else None  # noqa: E731
        return {
            Metric.DELIVERED_RATIO: ratio(self.delivered, self.expected),
            Metric.SAME_SERVER_RATIO: ratio(self.same_delivered, self.same_expected),
            Metric.CROSS_SERVER_RATIO: ratio(self.cross_delivered, self.cross_expected),
            Metric.LOST: self.lost,
            Metric.DUPLICATED: self.duplicated,
            Metric.UNEXPECTED: self.unexpected,
            Metric.RECOVERED: self.recovered,
            Metric.LOST_IN_FAULT: self.lost_in_fault,
            Metric.LOST_OUTSIDE_FAULT: self.lost_outside_fault,
            Metric.TRIMMED: self.trimmed,
            Metric.UNTRIMMED_LOST: self.lost - self.trimmed,
            Metric.MAX_GAP_S: self.max_gap_s,
            Metric.RECONNECTS: self.reconnects,
            Metric.DEAF_REPLICAS: self.deaf_replicas,
            Metric.PUBLISHED_TO_NOBODY: self.published_to_nobody,
            Metric.NACKED: self.nacked,
            Metric.DISTURBED: self.lost + self.duplicated + self.nacked,
        }[metric]

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q * 100) - 1]


def _session_at(sessions: list[Session], t: float) -> Session | None:
    return next((s for s in sessions if s.open_at(t)), None)


def _member_at(sessions: list[Session], t: float) -> bool:
    """A client is a room member from its first welcome to its last close, across reconnects."""
    closes = [s.closed for s in sessions]
    last = None if None in closes else max(c for c in closes if c is not None)
    return sessions[0].opened <= t and (last is None or t < last)


def fault_windows(history: History, margin: float = FAULT_MARGIN_S) -> list[tuple[float, float]]:
    """Each fault's window: from just before it was applied until it was healed, every client it
    disconnected was back and every replica's broker connection that broke had recovered (as the
    replicas report it), with `margin` either side for frames in flight."""
    windows = []
    for f in history.faults:
        healed = f.healed if f.healed is not None else float("inf")
        end = healed
        for _, t, _, working in history.broker_events:
            if working and f.applied - margin <= t <= healed + RECOVERY_LIMIT_S:
                end = max(end, t)
        for client_sessions in _by_client(history).values():
            for before, after in zip(client_sessions, client_sessions[1:]):
                if before.closed is not None and f.applied - margin <= before.closed <= healed + margin:
                    end = max(end, after.opened)
        windows.append((f.applied - margin, end + margin))
    return windows


def _by_client(history: History) -> dict[str, list[Session]]:
    by_client: dict[str, list[Session]] = {}
    for s in sorted(history.sessions, key=lambda s: s.opened):
        by_client.setdefault(s.client, []).append(s)
    return by_client


def account(history: History) -> Accounting:
    by_client = _by_client(history)
    copies = Counter((r.id, r.client) for r in history.received)
    first_at: dict[tuple[str, str], float] = {}
    for r in history.received:
        key = (r.id, r.client)
        first_at[key] = min(r.at, first_at.get(key, r.at))
    windows = fault_windows(history)
    trim_resumes: dict[str, list[float]] = {}
    for resume in history.resumes:
        if resume.trimmed:
            trim_resumes.setdefault(resume.client, []).append(resume.at)

    expected = delivered = duplicated = recovered = trimmed = lost_in = lost_out = 0
    same = [0, 0]
    cross = [0, 0]
    latencies: list[float] = []
    wanted: set[tuple[str, str]] = set()
    for m in history.sent:
        origin = _session_at(by_client.get(m.sender, []), m.at)
        for client, sessions in by_client.items():
            if client == m.sender or not _member_at(sessions, m.at):
                continue
            here = _session_at(sessions, m.at)
            key = (m.id, client)
            wanted.add(key)
            expected += 1
            together = origin is not None and here is not None and here.replica == origin.replica
            bucket = same if together else cross
            bucket[0] += 1
            n = copies.get(key, 0)
            if n:
                delivered += 1
                bucket[1] += 1
                duplicated += n - 1
                latencies.append((first_at[key] - m.at) * 1000.0)
                if here is None or not here.open_at(first_at[key]):
                    recovered += 1
            else:
                if any(t >= m.at for t in trim_resumes.get(client, [])):
                    trimmed += 1
                if any(lo <= m.at <= hi for lo, hi in windows):
                    lost_in += 1
                else:
                    lost_out += 1
    unexpected = sum(n for key, n in copies.items() if key not in wanted)
    placement = Counter(s[0].replica for s in by_client.values())
    gaps = [after.opened - before.closed for sessions in by_client.values()
            for before, after in zip(sessions, sessions[1:]) if before.closed is not None]
    return Accounting(
        sent=len(history.sent), expected=expected, delivered=delivered, lost=expected - delivered,
        duplicated=duplicated, unexpected=unexpected,
        same_expected=same[0], same_delivered=same[1], cross_expected=cross[0], cross_delivered=cross[1],
        latencies_ms=tuple(sorted(latencies)), placement=dict(sorted(placement.items())),
        recovered=recovered, lost_in_fault=lost_in, lost_outside_fault=lost_out, trimmed=trimmed,
        max_gap_s=max(gaps, default=0.0), reconnects=len(gaps), windows=tuple(windows),
        deaf_replicas=max(0, history.probes.get("replicas_with_members", 0) - history.probes.get("subscribers", 0)),
        published_to_nobody=history.probes.get("published_to_nobody", 0),
        nacked=len(set(history.nacked)),
    )


class Validity(enum.Enum):
    PASS = "as expected"
    FAIL = "NOT as expected"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Check:
    metric: Metric
    bound: Bound
    value: float | None

    @property
    def holds(self) -> bool:
        return self.value is not None and self.bound.holds(self.value)


@dataclass(frozen=True)
class Verdict:
    validity: Validity
    checks: tuple[Check, ...]
    reason: str = ""


class Measured(Protocol):
    def metric(self, metric: Metric) -> float | None: ...


def judge(acc: Measured, expect: dict[Metric, Bound]) -> Verdict:
    """Compare an accounting with what the scenario declared. Undefined metrics make it unknown."""
    checks = tuple(Check(metric, bound, acc.metric(metric)) for metric, bound in expect.items())
    undefined = [c.metric.value for c in checks if c.value is None]
    if undefined:
        return Verdict(Validity.UNKNOWN, checks, f"undefined: {', '.join(undefined)} (nothing to measure)")
    failed = [f"{c.metric.value} = {c.value:g}, declared {c.bound}" for c in checks if not c.holds]
    if failed:
        return Verdict(Validity.FAIL, checks, "; ".join(failed))
    return Verdict(Validity.PASS, checks)
