"""The numbers behind a run's pictures, pure: report.html draws them as SVG, `plots` as PNG.

Every time is relative to the run's first send, on the host's monotonic clock like the History itself.
A delivery is the first copy of a message at a client other than its sender (the accounting's meaning:
later copies are duplicates, a sender's own echo is not a delivery).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..accounting.checker import by_client
from ..accounting.history import History

#: report.html's timeline bins: 100 ms of send time
BIN_S = 0.1
#: bucket widths for a rate over a run, smallest first; a run gets the smallest that keeps MAX_BUCKETS
WIDTHS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
MAX_BUCKETS = 60


def first_send(h: History) -> float | None:
    """When the first message was generated: time 0 of every picture. None when nothing was sent."""
    return min((m.at for m in h.sent), default=None)


def timeline(h: History, bin_s: float = BIN_S) -> list[tuple[float, int, int]]:
    """Per `bin_s` of send time (from the first send): (bin start s, deliveries that arrived, lost).

    The same membership rule as the accounting: a message is owed to every client that had joined before
    it was sent, but its sender."""
    t0 = first_send(h)
    if t0 is None:
        return []
    joined = {client: sessions[0].opened for client, sessions in by_client(h.sessions).items()}
    got = {(r.id, r.client) for r in h.received}
    bins: dict[int, list[int]] = {}
    for m in h.sent:
        owed = [c for c, at in joined.items() if c != m.sender and at <= m.at]
        arrived = sum(1 for c in owed if (m.id, c) in got)
        b = bins.setdefault(int((m.at - t0) / bin_s), [0, 0])
        b[0] += arrived
        b[1] += len(owed) - arrived
    return [(k * bin_s, v[0], v[1]) for k, v in sorted(bins.items())]


def delivery_times(h: History) -> list[float]:
    """When each delivery arrived (absolute, sorted): first copies at clients other than the sender."""
    sender = {m.id: m.sender for m in h.sent}
    first: dict[tuple[str, str], float] = {}
    for r in h.received:
        if r.id in sender and sender[r.id] != r.client:
            key = (r.id, r.client)
            first[key] = min(r.at, first.get(key, r.at))
    return sorted(first.values())


def bucket_width(span_s: float) -> float:
    """The smallest width in WIDTHS_S that covers `span_s` seconds in at most MAX_BUCKETS buckets."""
    return next((w for w in WIDTHS_S if span_s <= w * MAX_BUCKETS), WIDTHS_S[-1])


@dataclass(frozen=True)
class Rates:
    """Messages sent and deliveries per second, in buckets of `width_s` from the first send.
    `starts[i]` is where bucket i begins; a rate is the bucket's count divided by its width."""

    width_s: float
    starts: tuple[float, ...] = ()
    sent_per_s: tuple[float, ...] = ()
    delivered_per_s: tuple[float, ...] = ()


def rates(h: History, width_s: float | None = None) -> Rates:
    """Sent and delivered per second over the run; empty (and width 1 s) when nothing was sent."""
    t0 = first_send(h)
    if t0 is None:
        return Rates(width_s or 1.0)
    sends = [m.at - t0 for m in h.sent]
    deliveries = [t - t0 for t in delivery_times(h)]
    span = max(sends + deliveries)
    width = width_s or bucket_width(span)
    n = math.floor(span / width) + 1

    def per_s(times: list[float]) -> tuple[float, ...]:
        counts = [0] * n
        for t in times:
            counts[min(n - 1, max(0, math.floor(t / width)))] += 1
        return tuple(c / width for c in counts)

    return Rates(width, tuple(i * width for i in range(n)), per_s(sends), per_s(deliveries))


@dataclass(frozen=True)
class FaultSpan:
    """One fault, relative to the first send: applied..healed (inf: never healed), and the accounting's
    window around it (margin, reconnects and broker recovery included; inf: never closed)."""

    label: str
    applied: float
    healed: float
    window: tuple[float, float]


def fault_spans(h: History, windows: Sequence[tuple[float, float]]) -> list[FaultSpan]:
    """Each fault with its window (`windows`: the accounting's, one per fault in order, as
    `fault_windows` gives them). Empty when nothing was sent: there is no time 0."""
    t0 = first_send(h)
    if t0 is None:
        return []
    return [FaultSpan(f"{f.kind} {f.target}", f.applied - t0,
                      (f.healed if f.healed is not None else math.inf) - t0, (lo - t0, hi - t0))
            for f, (lo, hi) in zip(h.faults, windows)]


def extent(r: Rates, spans: Sequence[FaultSpan]) -> tuple[float, float]:
    """The time axis of a run's picture: from 0 (or an earlier window start) to the last bucket's end or
    a later finite heal or window end, so a fault healed after the last delivery still shows whole."""
    lo = min([0.0] + [s.window[0] for s in spans])
    ends = [r.starts[-1] + r.width_s] if r.starts else [r.width_s]
    return lo, max(ends + [t for s in spans for t in (s.healed, s.window[1]) if math.isfinite(t)])


def placement_at_end(h: History) -> dict[str, int]:
    """Per replica (every one listed, 0 included): clients whose last connection was still open when the
    run ended. Beside the accounting's `placement` (first connections) it shows where reconnects went."""
    out = {name: 0 for name in h.replicas}
    for sessions in by_client(h.sessions).values():
        last = sessions[-1]
        if last.closed is None:
            out[last.replica] = out.get(last.replica, 0) + 1
    return dict(sorted(out.items()))


def reconnected(h: History) -> bool:
    """Whether any client lost a connection during the run (then placement changes are worth showing)."""
    return any(s.closed is not None for s in h.sessions)
