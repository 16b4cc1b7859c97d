"""The verdict: what was measured against what the scenario declared. Pure.

Validity is `as expected`, `NOT as expected`, or `unknown` when a declared metric is undefined (a ratio
over nothing) or the checker itself failed: a checker that crashes never reports a pass.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from ..scenario import Bound, Metric
from .checker import Accounting


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

    def text(self, *, failure: bool) -> str:
        """`fails as expected` for a scenario that demonstrates a failure and got it; else the validity."""
        if failure and self.validity is Validity.PASS:
            return "fails as expected"
        return self.validity.value


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def measures(acc: Accounting) -> dict[Metric, float | None]:
    """Every metric the room accounting defines (None: undefined for this run)."""
    f = acc.failover
    return {
        Metric.DELIVERED_RATIO: _ratio(acc.delivered, acc.expected),
        Metric.SAME_SERVER_RATIO: _ratio(acc.same_delivered, acc.same_expected),
        Metric.CROSS_SERVER_RATIO: _ratio(acc.cross_delivered, acc.cross_expected),
        Metric.LOST: acc.lost,
        Metric.DUPLICATED: acc.duplicated,
        Metric.UNEXPECTED: acc.unexpected,
        Metric.UNSENT: acc.unsent,
        Metric.RECOVERED: acc.recovered,
        Metric.LOST_IN_FAULT: acc.lost_in_fault,
        Metric.LOST_OUTSIDE_FAULT: acc.lost_outside_fault,
        Metric.TRIMMED: acc.trimmed,
        Metric.UNTRIMMED_LOST: None if acc.trimmed is None else acc.lost - acc.trimmed,
        Metric.MAX_GAP_S: acc.max_gap_s,
        Metric.RECONNECTS: acc.reconnects,
        Metric.DEAF_REPLICAS: None if acc.deaf_replicas is None else len(acc.deaf_replicas),
        Metric.PUBLISHED_TO_NOBODY: acc.published_to_nobody,
        Metric.NACKED: acc.nacked,
        Metric.DISTURBED: acc.lost + acc.duplicated + acc.nacked,
        Metric.HANDSHAKE_OK_RATIO: _ratio(acc.joined, acc.clients),
        Metric.REPLICAS_USED: acc.replicas_used,
        Metric.PLACEMENT_MAX_MIN: acc.placement_max_min,
        Metric.UNACKED: acc.unacked,
        Metric.DROPPED_ON_KILLED_RATIO: _ratio(f.dropped_on_killed, f.on_killed),
        Metric.DROPPED_ELSEWHERE: f.dropped_elsewhere if f.killed else None,
        Metric.RECONNECTED_RATIO: _ratio(f.reconnected, f.dropped),
        Metric.RECONNECT_MAX_S: f.reconnect_max_s,
        Metric.LOST_UNDISTURBED: acc.lost_undisturbed,
        Metric.MISROUTED: acc.misrouted,
        Metric.NOT_MEMBER: acc.not_member,
        Metric.DROPS: acc.drops,
        Metric.NEVER_BACK: acc.never_back,
        Metric.LATE_RECOVERIES: acc.late_recoveries,
        Metric.RECOVERY_MAX_S: acc.recovery_max_s,
        Metric.REMAPPED_RATIO: acc.remap.ratio,
        Metric.P99_IN_CHANGE_MS: acc.p99_in_change_ms,
    }


def judge(values: Mapping[Metric, float | None], expect: Mapping[Metric, Bound]) -> Verdict:
    """Compare measured values with what the scenario declared. A bound that does not hold fails the
    verdict; otherwise an undefined or unmeasured metric makes it unknown, never a pass."""
    checks = tuple(Check(metric, bound, values.get(metric)) for metric, bound in expect.items())
    failed = [f"{c.metric.value} = {c.value:g}, declared {c.bound}" for c in checks
              if c.value is not None and not c.holds]
    if failed:
        return Verdict(Validity.FAIL, checks, "; ".join(failed))
    undefined = [c.metric.value for c in checks if c.value is None]
    if undefined:
        return Verdict(Validity.UNKNOWN, checks, f"not measured: {', '.join(undefined)} (undefined for this run, "
                                                 f"or the part that reports it did not answer)")
    return Verdict(Validity.PASS, checks)


def unknown(reason: str, expect: Mapping[Metric, Bound]) -> Verdict:
    """The verdict when the checker could not run: every check unmeasured."""
    return Verdict(Validity.UNKNOWN, tuple(Check(m, b, None) for m, b in expect.items()), reason)
