"""What a fault reaches, for how long, and which lost deliveries that excuses. Pure.

A fault names the parts of the system it reaches:

- a replica (`app-2`): the client connections on it and its broker connections (a scale-in, or one step of
  a rolling restart: the replica taken away or replaced; a scale-out: the replica added);
- a client's connection (`client:<name>`);
- the broker (`broker`) or the load balancer (`lb`): every path goes through them (an nginx reload reaches
  the load balancer; a scale-out or scale-in reaches it too when a shutdown timeout cuts what its old
  workers held).

A node fault reaches what ran on the node; the harness names those parts when it applies the fault
(`FaultEvent.reaches`). A part is reached from just before the fault was applied (`margin`) until it has
recovered — every client connection of it that the fault cut is back, every broker connection of it that
broke during the fault works again — but never past the fault's allowance, `healed + recovery_s`; `margin`
after that. A recovery later than the allowance, or none at all, is a late recovery: a failure with its own
metric, never a longer excuse.

A replica's own report that its broker connection broke is evidence, not an excuse: for a replica the fault
reaches it says when that replica recovered; for any other replica it reaches that replica only when the
harness saw the effect too (deliveries through it stopped while it said it was broken), only while a fault
was on, and never past that fault's allowance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .history import BrokerEvent, FaultEvent, History, Session

#: frames in flight when a fault starts or ends still belong to it
FAULT_MARGIN_S = 0.5
BROKER, LB = "broker", "lb"
#: parts every path goes through
EVERYWHERE = frozenset({BROKER, LB})
#: fault kinds that reach the broker (any other kind reaches its target)
BROKER_FAULTS = frozenset({"restart-redis", "pause-redis", "restart-broker", "pause-broker",
                           "kill-pubsub-clients", "kill-cluster-master"})
#: fault kinds that reach the load balancer: every path goes through it (a reload that cuts nothing ends as
#: soon as its new workers run, so its window is short)
LB_FAULTS = frozenset({"reload-lb"})
#: a replica's broker connections by the direction they carry: what it publishes, what it receives
SENDING_PARTS = frozenset({"publisher"})
RECEIVING_PARTS = frozenset({"subscriber", "reader"})

#: does the harness see deliveries through `replica`, in the direction of broker part `part`, stop between
#: the two times (nothing sent then through it arrived on a live connection)? Deliveries that also went
#: through a part of the last argument (what the fault itself reached) are no evidence either way: their
#: own timing is the fault's (a frozen sender's replica publishes what it holds only after the heal).
Stopped = Callable[[str, str, float, float, frozenset[str]], bool]


def client(name: str) -> str:
    """The part that is one client's connection."""
    return f"client:{name}"


def reach(f: FaultEvent) -> frozenset[str]:
    """The parts fault `f` reaches: as the harness named them, else as its kind says (a replica fault its
    target, a broker fault the broker). A kind the checker does not know reaches its target only."""
    if f.reaches:
        return frozenset(f.reaches)
    if f.kind in BROKER_FAULTS:
        return frozenset({BROKER})
    if f.kind in LB_FAULTS:
        return frozenset({LB})
    return frozenset({f.target})


@dataclass(frozen=True)
class Span:
    """Part `part` was reached by fault number `fault` (0-based) from `lo` to `hi`."""

    part: str
    lo: float
    hi: float
    fault: int


@dataclass(frozen=True)
class Recovery:
    """How long after its fault healed one cut connection was back or one broken broker connection worked
    again (inf: never); `late` when that was past the fault's allowance."""

    fault: int
    what: str
    after_heal_s: float
    late: bool


@dataclass(frozen=True)
class Reach:
    spans: tuple[Span, ...]
    recoveries: tuple[Recovery, ...]

    def at(self, parts: set[str], t: float) -> bool:
        """Was any of `parts` reached at time `t`?"""
        return any(s.lo <= t <= s.hi for s in self.spans if s.part in parts)

    def windows(self, faults: int) -> tuple[tuple[float, float], ...]:
        """Per fault, the first and last moment anything was reached (for the report's pictures)."""
        out = []
        for i in range(faults):
            mine = [s for s in self.spans if s.fault == i]
            out.append((min(s.lo for s in mine), max(s.hi for s in mine)) if mine else (math.nan, math.nan))
        return tuple(out)

    @property
    def late(self) -> int:
        return sum(1 for r in self.recoveries if r.late)

    @property
    def recovery_max_s(self) -> float | None:
        return max((r.after_heal_s for r in self.recoveries), default=None)


def end_of_run(h: History) -> float:
    """The last moment the history speaks of (a fault never healed is taken as healed then)."""
    times = [m.at for m in h.sent] + [r.at for r in h.received] + [s.opened for s in h.sessions]
    times += [s.closed for s in h.sessions if s.closed is not None] + [f.applied for f in h.faults]
    times += [f.healed for f in h.faults if f.healed is not None] + [e.at for e in h.broker_events]
    return max(times, default=0.0)


def _breaks(events: list[BrokerEvent], lo: float, hi: float) -> list[tuple[BrokerEvent, float]]:
    """Each broker connection that broke between `lo` and `hi`, with when it worked again (inf: never):
    the first "working" report of that connection after its break."""
    out = []
    broken: dict[tuple[str, str], BrokerEvent] = {}
    for e in events:
        key = (e.replica, e.part)
        if not e.working and lo <= e.at <= hi:
            broken.setdefault(key, e)
        elif e.working and key in broken:
            out.append((broken.pop(key), e.at))
    return out + [(e, math.inf) for e in broken.values()]


def reach_of(h: History, sessions: dict[str, list[Session]], stopped: Stopped,
             margin: float = FAULT_MARGIN_S) -> Reach:
    """Every part each fault of `h` reached, and when; every recovery it waited for."""
    events = sorted(h.broker_events, key=lambda e: e.at)
    last = end_of_run(h)
    spans: list[Span] = []
    recoveries: list[Recovery] = []
    for i, f in enumerate(h.faults):
        parts = reach(f)
        everything = bool(parts & EVERYWHERE)
        healed = f.healed if f.healed is not None else last
        start, during = f.applied - margin, healed + margin
        deadline = healed + f.recovery_s
        back: dict[str, float] = {p: healed for p in parts}

        def waits(part: str, at: float, what: str) -> None:
            back[part] = max(back.get(part, healed), at)
            after = max(0.0, at - healed)
            recoveries.append(Recovery(i, what, after, not after <= f.recovery_s))

        for name, ss in sessions.items():
            for k, s in enumerate(ss):
                if s.closed is None or not start <= s.closed <= during:
                    continue
                if not (everything or s.replica in parts or client(name) in parts):
                    continue  # a drop the fault does not explain
                again = ss[k + 1].opened if k + 1 < len(ss) else math.inf
                for part in {s.replica, client(name)} & parts or parts & EVERYWHERE:
                    waits(part, again, f"{client(name)} back")
        for e, working in _breaks(events, start, during):
            what = f"{e.replica} {e.part} working"
            if everything or e.replica in parts:
                for part in ({e.replica} & parts) or parts & EVERYWHERE:
                    waits(part, working, what)
            elif stopped(e.replica, e.part, e.at, min(working, deadline), parts):
                # the harness saw it too: that replica is reached for as long as it said, within the allowance
                spans.append(Span(e.replica, e.at - margin, min(working, deadline) + margin, i))
                after = max(0.0, working - healed)
                recoveries.append(Recovery(i, what, after, not after <= f.recovery_s))
        spans += [Span(part, start, min(at, deadline) + margin, i) for part, at in back.items()]
    return Reach(tuple(spans), tuple(recoveries))
