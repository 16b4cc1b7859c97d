"""The Socket.IO protocol: python-socketio replicas (labs/app/sio.py) with an optional Redis manager,
python-socketio clients, and what only Socket.IO has: Engine.IO's HTTP exchanges, so stickiness can be
measured (handshakes, HTTP 400 "unknown session", which poller got one).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import engineio.payload

from ..accounting.checker import Accounting
from ..accounting.history import History
from ..accounting.recovery import DropRecovery, Rejoin, per_drop, totals
from ..scenario import AppKind, Balance, Balancer, Broker, Metric, Scenario
from .base import Link, Outcome, ProtocolAdapter, Sink, source_address
from .cells import pct, ratio
from .socketio_link import HttpEvent, SocketIOLink

#: python-engineio refuses a polling payload of more than `Payload.max_decode_packets` packets (16 by
#: default, a guard against floods) and drops the connection ("Unexpected packet from server"). A server
#: answers a long poll with everything queued for the client: in a busy room that is one packet per message
#: from every other member, so the lab's clients take this many. Process-wide: it is a class attribute.
MAX_DECODE_PACKETS = 10_000
MANAGERS = {Broker.NONE: "none (in-memory)", Broker.REDIS_PUBSUB: "AsyncRedisManager",
            Broker.REDIS_STREAMS: "StreamManager (recovery)"}


@dataclass
class SocketIOHistory(History):
    http: list[HttpEvent] = field(default_factory=list)
    #: every connection's CONNECT exchange: what it carried for recovery, what the server answered
    rejoins: list[Rejoin] = field(default_factory=list)


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


def stickiness(http: list[HttpEvent]) -> Stickiness:
    polls = Counter(e.client for e in http if e.polling)
    with_400 = {e.client for e in http if e.session_unknown}
    pollers = [c for c, n in polls.items() if n > 1]
    errors = Counter(e.client for e in http if not e.ok)
    return Stickiness(
        requests=len(http), http_errors=sum(errors.values()),
        session_unknown=sum(1 for e in http if e.session_unknown),
        pollers=len(pollers), pollers_with_400=sum(1 for c in pollers if c in with_400),
        errors_by_client=dict(sorted(errors.items())),
    )


def failover_text(a: Accounting) -> str:
    f = a.failover
    if not f.killed:
        return "-"
    back = "never" if f.reconnect_max_s == math.inf else (
        "-" if f.reconnect_max_s is None else f"≤ {f.reconnect_max_s:.2f}s")
    return (f"{f.dropped_on_killed}/{f.on_killed} on {'+'.join(f.killed)} dropped, {f.dropped_elsewhere} elsewhere; "
            f"{f.reconnected}/{f.dropped} back {back}; missed {f.missed_while_away}, dup {a.duplicated}; "
            f"others lost {a.lost_undisturbed}")


def recovery_text(drops: list[DropRecovery]) -> str:
    """Recovery over the run's drops: how many the server recovered, what was replayed and filled."""
    t = totals(drops)
    if not t.drops:
        return "-"
    gap = "-" if t.gap_filled is None else f"{t.gap_filled:.0%}"
    return (f"{t.recovered}/{t.back} recovered ({t.drops} drops); replayed {t.replayed}, filled {t.filled}/"
            f"{t.missed} ({gap}), dup {t.duplicates}, lost {t.lost}")


def lost_text(a: Accounting, *, faulted: bool) -> str:
    """Deliveries lost; under faults, how many of them were sent inside a fault's window and outside."""
    if not faulted:
        return str(a.lost)
    return f"{a.lost} ({a.lost_in_fault} in / {a.lost_outside_fault} outside fault)"


def recovery_json(drops: list[DropRecovery]) -> dict[str, Any]:
    t = totals(drops)
    return {**asdict(t), "gap_filled": t.gap_filled,
            "per_drop": [{**asdict(d), "gap_filled": d.gap_filled} for d in drops]}


class SocketIOProtocol(ProtocolAdapter):
    app = AppKind.SOCKETIO
    app_module = "wslab_app.sio"

    def replica_args(self, scenario: Scenario) -> tuple[str, ...]:
        top = scenario.topology
        if top.broker is Broker.REDIS_STREAMS:
            return ("--maxlen", str(top.maxlen), "--max-disconnection-duration", f"{top.max_disconnection_duration:g}")
        return ()

    def new_history(self) -> History:
        return SocketIOHistory()

    def prepare(self) -> None:
        payload = engineio.payload.Payload
        payload.max_decode_packets = max(payload.max_decode_packets, MAX_DECODE_PACKETS)

    def link(self, name: str, index: int, sink: Sink, *, port: int, scenario: Scenario,
             history: History, host: str = "127.0.0.1") -> Link:
        assert isinstance(history, SocketIOHistory)
        wl = scenario.workload
        return SocketIOLink(name, host=host, port=port, room=wl.room, transport=wl.transport, events=wl.events,
                            source=source_address(index, wl.source_subnets), sink=sink, http_log=history.http,
                            rejoins=history.rejoins)

    def measures(self, history: History, acc: Accounting) -> dict[Metric, float | None]:
        assert isinstance(history, SocketIOHistory)
        s = stickiness(history.http)
        t = totals(per_drop(history, history.rejoins))
        return {
            Metric.SESSION_UNKNOWN: s.session_unknown,
            Metric.POLLERS_WITH_400_RATIO: s.pollers_with_400 / s.pollers if s.pollers else None,
            Metric.HTTP_ERRORS: s.http_errors,
            Metric.RECOVERED_DROPS: t.recovered, Metric.UNRECOVERED_DROPS: t.unrecovered,
            Metric.REPLAYED: t.replayed, Metric.GAP_FILLED_RATIO: t.gap_filled,
            Metric.REPLAY_DUPLICATES: t.duplicates, Metric.MISSED_LOST: t.lost,
        }

    def columns(self, outcome: Outcome) -> dict[str, str]:
        s, a = outcome.scenario, outcome.accounting
        assert isinstance(outcome.history, SocketIOHistory)
        st = stickiness(outcome.history.http)
        top, wl = s.topology, s.workload
        policy = top.balance.value
        if top.balance is Balance.COOKIE and top.balancer is Balancer.HAPROXY:
            policy += " (HAProxy's)"
        elif top.balance is Balance.COOKIE:
            policy += " (native)" if "native" in outcome.sticky else " (open-source)"
        if wl.source_subnets > 1:
            policy += f", {wl.source_subnets} /24s via XFF"
        return {
            "policy": policy, "transport": wl.transport.value, "events": wl.events.value,
            "manager": MANAGERS.get(top.broker, top.broker.value),
            "handshakes ok": f"{a.joined}/{a.clients}",
            'HTTP 400 "Session ID unknown"': (f"{st.session_unknown} ({st.pollers_with_400}/{st.pollers} pollers)"
                                              if st.pollers else str(st.session_unknown)),
            "clients per replica": " · ".join(str(n) for n in a.placement.values()),
            "max/min": ratio(a.placement_max_min),
            "cross-server room delivery": pct(a.cross_delivered, a.cross_expected),
            "lost": lost_text(a, faulted=bool(s.faults)),
            "unacked": str(a.unacked),
            "failover (killed replica)": failover_text(a),
            "recovery (per drop)": recovery_text(per_drop(outcome.history, outcome.history.rejoins)),
        }

    def kind(self, outcome: Outcome) -> str:
        return "Socket.IO"

    def to_json(self, outcome: Outcome) -> dict[str, Any]:
        s = outcome.scenario
        assert isinstance(outcome.history, SocketIOHistory)
        return {"socketio": {
            "app": "python-socketio", "transport": s.workload.transport.value, "events": s.workload.events.value,
            "manager": MANAGERS.get(s.topology.broker, s.topology.broker.value),
            "balance": s.topology.balance.value, "sticky": outcome.sticky or None,
            "source_subnets": s.workload.source_subnets, "http": asdict(stickiness(outcome.history.http)),
            "recovery": recovery_json(per_drop(outcome.history, outcome.history.rejoins)),
        }}

    def notes(self, outcomes: list[Outcome]) -> list[str]:
        return [f"cookie stickiness — {note}" for note in dict.fromkeys(r.sticky for r in outcomes if r.sticky)]
