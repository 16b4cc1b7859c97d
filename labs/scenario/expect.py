"""What a scenario's [expect] table can speak about, the values each metric can take, and the bounds.

A bound is refused when it cannot mean anything: NaN, a value the metric never takes (a negative count, a
ratio of 2), a range that contains no possible value, or one that contains every possible value (it
would pass whatever happened).
"""

from __future__ import annotations

import datetime
import enum
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from ..errors import ScenarioError

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 2, 40, 40, 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4


def show(value: Any) -> str:
    """A value as a short one-line repr: long strings, huge ints and deep tables are cut."""
    if isinstance(value, (datetime.date, datetime.time)):  # TOML dates and times
        return f"{value.isoformat()} (a {type(value).__name__})"
    return _repr.repr(value)


@dataclass(frozen=True)
class Domain:
    """The values a metric can take: [lo, hi], integers only when `integer`, and +inf only when `inf`."""

    lo: float
    hi: float = math.inf
    integer: bool = False
    inf: bool = False
    text: str = ""

    def contains(self, value: float) -> bool:
        if value == math.inf:
            return self.inf
        return self.lo <= value <= self.hi and (not self.integer or value.is_integer())


RATIO = Domain(0.0, 1.0, text="a ratio in [0, 1]")
COUNT = Domain(0.0, integer=True, text="a count (an integer >= 0)")
SECONDS = Domain(0.0, text="seconds (>= 0, finite)")
SECONDS_OR_NEVER = Domain(0.0, inf=True, text="seconds (>= 0, or inf: never)")
MAX_OVER_MIN = Domain(1.0, inf=True, text="most over least loaded (>= 1, or inf: a replica got none)")


class Metric(enum.Enum):
    """What an expectation can speak about; each is computed by the checker."""

    DELIVERED_RATIO = "delivered_ratio"
    SAME_SERVER_RATIO = "same_server_ratio"
    CROSS_SERVER_RATIO = "cross_server_ratio"
    LOST = "lost"
    DUPLICATED = "duplicated"
    UNEXPECTED = "unexpected"
    RECOVERED = "recovered"
    LOST_IN_FAULT = "lost_in_fault"
    LOST_OUTSIDE_FAULT = "lost_outside_fault"
    TRIMMED = "trimmed"
    #: lost minus trimmed: loss that trimming does not explain
    UNTRIMMED_LOST = "untrimmed_lost"
    MAX_GAP_S = "max_gap_s"
    RECONNECTS = "reconnects"
    DEAF_REPLICAS = "deaf_replicas"
    PUBLISHED_TO_NOBODY = "published_to_nobody"
    NACKED = "nacked"
    #: lost + duplicated + nacked: every message whose delivery the fault disturbed in a way a user sees
    DISTURBED = "disturbed"
    #: messages a client was due to send and never sent
    UNSENT = "unsent"
    # measured by Socket.IO runs
    HANDSHAKE_OK_RATIO = "handshake_ok_ratio"
    SESSION_UNKNOWN = "session_unknown_400"
    POLLERS_WITH_400_RATIO = "pollers_with_400_ratio"
    HTTP_ERRORS = "http_errors"
    REPLICAS_USED = "replicas_used"
    PLACEMENT_MAX_MIN = "placement_max_min"
    UNACKED = "unacked"
    DROPPED_ON_KILLED_RATIO = "dropped_on_killed_ratio"
    DROPPED_ELSEWHERE = "dropped_elsewhere"
    RECONNECTED_RATIO = "reconnected_ratio"
    RECONNECT_MAX_S = "reconnect_max_s"
    LOST_UNDISTURBED = "lost_undisturbed"
    #: copies delivered to a client of another room, and to a client that was not a member when sent
    MISROUTED = "misrouted"
    NOT_MEMBER = "not_member"
    #: connections that closed before the run ended (whether or not their client came back), and clients
    #: that never came back
    DROPS = "drops"
    NEVER_BACK = "never_back"
    #: what a fault cut or broke and did not recover within its allowance (recovery_s after the heal)
    LATE_RECOVERIES = "late_recoveries"
    #: the longest time after a heal that something a fault cut or broke took to recover (inf: never)
    RECOVERY_MAX_S = "recovery_max_s"
    #: of the clients that reconnected after a topology change cut them, those that landed on another replica
    REMAPPED_RATIO = "remapped_ratio"
    #: delivery latency p99 (ms) of the messages sent while a topology change was under way
    P99_IN_CHANGE_MS = "p99_in_change_ms"
    # Socket.IO connection state recovery, per drop that came back (labs/accounting/recovery.py)
    #: drops whose reconnection the server answered as recovered, and those it did not
    RECOVERED_DROPS = "recovered_drops"
    UNRECOVERED_DROPS = "unrecovered_drops"
    #: packets the server replayed (events before its CONNECT answer)
    REPLAYED = "replayed"
    #: of the pairs a dropped client missed, those the replay delivered (replayed ÷ missed)
    GAP_FILLED_RATIO = "gap_filled_ratio"
    #: replayed copies of pairs the client already had
    REPLAY_DUPLICATES = "replay_duplicates"
    #: pairs a dropped client missed and never got
    MISSED_LOST = "missed_lost"
    # measured on a Redis Cluster (redis-cluster-* brokers)
    #: bytes the cluster nodes moved over their cluster bus (the bus network) per message sent
    BUS_BYTES_PER_MESSAGE = "bus_bytes_per_message"
    #: longest time a replica's subscriber went without a shard it needed (a killed master: until it was
    #: subscribed again on the promoted node)
    RESUBSCRIBE_MAX_S = "resubscribe_max_s"

    @property
    def domain(self) -> Domain:
        return _DOMAINS.get(self, COUNT)


_DOMAINS = {
    **{m: RATIO for m in (Metric.DELIVERED_RATIO, Metric.SAME_SERVER_RATIO, Metric.CROSS_SERVER_RATIO,
                          Metric.HANDSHAKE_OK_RATIO, Metric.POLLERS_WITH_400_RATIO,
                          Metric.DROPPED_ON_KILLED_RATIO, Metric.RECONNECTED_RATIO, Metric.REMAPPED_RATIO,
                          Metric.GAP_FILLED_RATIO)},
    Metric.P99_IN_CHANGE_MS: Domain(0.0, text="milliseconds (>= 0, finite)"),
    Metric.MAX_GAP_S: SECONDS,
    Metric.RECONNECT_MAX_S: SECONDS_OR_NEVER,
    Metric.RECOVERY_MAX_S: SECONDS_OR_NEVER,
    Metric.PLACEMENT_MAX_MIN: MAX_OVER_MIN,
    Metric.BUS_BYTES_PER_MESSAGE: Domain(0.0, text="bytes per message (>= 0, finite)"),
    Metric.RESUBSCRIBE_MAX_S: SECONDS_OR_NEVER,
}

#: measured only on a Redis Cluster (a redis-cluster-* broker)
CLUSTER_ONLY = frozenset({Metric.BUS_BYTES_PER_MESSAGE, Metric.RESUBSCRIBE_MAX_S})

#: measured from Engine.IO's HTTP exchanges: only a Socket.IO run has them
#: recovery's, from what each CONNECT carried and its answer said: only a Socket.IO link records it
RECOVERY_METRICS = frozenset({Metric.RECOVERED_DROPS, Metric.UNRECOVERED_DROPS, Metric.REPLAYED,
                              Metric.GAP_FILLED_RATIO, Metric.REPLAY_DUPLICATES, Metric.MISSED_LOST})
SOCKETIO_ONLY = frozenset({Metric.SESSION_UNKNOWN, Metric.POLLERS_WITH_400_RATIO, Metric.HTTP_ERRORS}) | RECOVERY_METRICS
#: measured from what only the lab's own WebSocket replica reports (stream sequence numbers, its broker's
#: subscriptions and publishes)
WEBSOCKET_ONLY = frozenset({Metric.TRIMMED, Metric.UNTRIMMED_LOST, Metric.DEAF_REPLICAS,
                            Metric.PUBLISHED_TO_NOBODY})
#: everything a Socket.IO run can be judged on (the room accounting is the same for every protocol)
SOCKETIO_METRICS = frozenset(Metric) - WEBSOCKET_ONLY - CLUSTER_ONLY
#: everything a run of the seed article's Node `ws` server can be judged on: the room accounting, and the
#: publishes that reached no subscriber (PUBLISH's reply, which it counts); it has no streams and does not
#: check its own subscription
SEED_NODE_WS_METRICS = (frozenset(Metric) - SOCKETIO_ONLY - CLUSTER_ONLY
                        - (WEBSOCKET_ONLY - {Metric.PUBLISHED_TO_NOBODY}))


@dataclass(frozen=True)
class Bound:
    """A closed interval a metric must fall in; `min == max` is an exact value."""

    min: float = -math.inf
    max: float = math.inf

    def holds(self, value: float) -> bool:
        return self.min <= value <= self.max

    def __str__(self) -> str:
        if self.min == self.max:
            return f"= {self.min:g}"
        if self.max == math.inf:
            return f">= {self.min:g}"
        if self.min == -math.inf:
            return f"<= {self.max:g}"
        return f"in [{self.min:g}, {self.max:g}]"


#: beyond 2**53 a float no longer holds every integer: such a bound cannot be compared exactly
_MAX_EXACT = 2 ** 53


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {what} must be a number or {{min = .., max = ..}}, got {show(value)}")
    if isinstance(value, int) and abs(value) > _MAX_EXACT:
        raise ScenarioError(f"{where}: {what} = {show(value)} is too large (more than 2**53)")
    if math.isnan(value):
        raise ScenarioError(f"{where}: {what} = nan is not a number")
    return float(value) + 0.0  # -0.0 reads as 0.0


def _written(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    return show(value)


def bound(metric: Metric, value: Any, where: str) -> Bound:
    """Validate `expect.<metric> = value` (a number or {min, max}) against the metric's domain."""
    key, domain = f"expect.{metric.value}", metric.domain
    about = f"{metric.value} is {domain.text}"
    every = f"holds for every possible value of {metric.value}, {domain.text}: it would pass whatever happened"
    if isinstance(value, dict):
        if not value or not set(value) <= {"min", "max"}:
            raise ScenarioError(f"{where}: {key} must be a number or {{min = .., max = ..}}, got {show(value)}")
        ends = {end: _number(v, f"{key} {end}", where) for end, v in value.items()}
        for end, v in ends.items():
            if math.isfinite(v) and not domain.contains(v):
                why = "not a whole number" if domain.lo <= v <= domain.hi else "impossible"
                raise ScenarioError(f"{where}: {key} {end} = {show(value[end])} is {why}: {about}")
        result = Bound(ends.get("min", -math.inf), ends.get("max", math.inf))
        if result.min > result.max:
            raise ScenarioError(f"{where}: {key} has min > max: {_written(value)}")
        finite_hit = result.max >= domain.lo and result.min <= domain.hi and result.min != math.inf
        if not finite_hit and not (domain.inf and result.max == math.inf):
            raise ScenarioError(f"{where}: {key} = {_written(value)} admits no possible value: {about}")
        if result.min <= domain.lo and result.max >= (math.inf if domain.inf else domain.hi):
            raise ScenarioError(f"{where}: {key} = {_written(value)} {every}")
        return result
    exact = _number(value, key, where)
    if not domain.contains(exact):
        why = "not a whole number" if math.isfinite(exact) and domain.lo <= exact <= domain.hi else "impossible"
        raise ScenarioError(f"{where}: {key} = {show(value)} is {why}: {about}")
    return Bound(exact, exact)
