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

from .history import History, Session
from .scenario import Bound, Metric


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
        }[metric]

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q * 100) - 1]


def _session_at(sessions: list[Session], t: float) -> Session | None:
    return next((s for s in sessions if s.open_at(t)), None)


def account(history: History) -> Accounting:
    by_client: dict[str, list[Session]] = {}
    for s in history.sessions:
        by_client.setdefault(s.client, []).append(s)
    copies = Counter((r.id, r.client) for r in history.received)
    first_at: dict[tuple[str, str], float] = {}
    for r in history.received:
        key = (r.id, r.client)
        first_at[key] = min(r.at, first_at.get(key, r.at))

    expected = delivered = duplicated = 0
    same = [0, 0]
    cross = [0, 0]
    latencies: list[float] = []
    wanted: set[tuple[str, str]] = set()
    for m in history.sent:
        origin = _session_at(by_client.get(m.sender, []), m.at)
        for client, sessions in by_client.items():
            if client == m.sender:
                continue
            here = _session_at(sessions, m.at)
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
    unexpected = sum(n for key, n in copies.items() if key not in wanted)
    placement = Counter(s.replica for s in history.sessions)
    return Accounting(
        sent=len(history.sent), expected=expected, delivered=delivered, lost=expected - delivered,
        duplicated=duplicated, unexpected=unexpected,
        same_expected=same[0], same_delivered=same[1], cross_expected=cross[0], cross_delivered=cross[1],
        latencies_ms=tuple(sorted(latencies)), placement=dict(sorted(placement.items())),
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


def judge(acc: Accounting, expect: dict[Metric, Bound]) -> Verdict:
    """Compare the accounting with what the scenario declared. Undefined metrics make it unknown."""
    checks = tuple(Check(metric, bound, acc.metric(metric)) for metric, bound in expect.items())
    undefined = [c.metric.value for c in checks if c.value is None]
    if undefined:
        return Verdict(Validity.UNKNOWN, checks, f"undefined: {', '.join(undefined)} (nothing expected)")
    failed = [f"{c.metric.value} = {c.value:g}, declared {c.bound}" for c in checks if not c.holds]
    if failed:
        return Verdict(Validity.FAIL, checks, "; ".join(failed))
    return Verdict(Validity.PASS, checks)
