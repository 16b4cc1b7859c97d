"""The Socket.IO table (one row per run: policy, transport, handshakes, 400s, placement, room delivery,
failover, verdict) and the `socketio` section of result.json."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .checker import Validity
from .scenario import Balance, Broker
from .sio_checker import SioAccounting

if TYPE_CHECKING:
    from .report import RunResult

MANAGERS = {Broker.NONE: "none (in-memory)", Broker.REDIS_PUBSUB: "AsyncRedisManager"}


def _pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "0/0 (n/a)"


def _ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return "∞" if value == math.inf else f"{value:.2f}"


def verdict_text(result: "RunResult") -> str:
    """`fails as expected` for a scenario that demonstrates a failure and got it; else the validity."""
    if result.scenario.failure and result.verdict.validity is Validity.PASS:
        return "fails as expected"
    return result.verdict.validity.value


def policy_text(result: "RunResult") -> str:
    top, wl = result.scenario.topology, result.scenario.workload
    text = top.balance.value
    if top.balance is Balance.COOKIE:
        text += " (native)" if "native" in result.sticky else " (open-source)"
    if wl.source_subnets > 1:
        text += f", {wl.source_subnets} /24s via XFF"
    return text


def failover_text(acc: SioAccounting) -> str:
    f = acc.failover
    if not f.killed:
        return "–"
    back = "never" if f.reconnect_max_s == math.inf else (
        "–" if f.reconnect_max_s is None else f"≤ {f.reconnect_max_s:.2f}s")
    return (f"{f.dropped_on_killed}/{f.on_killed} on {'+'.join(f.killed)} dropped, {f.dropped_elsewhere} elsewhere; "
            f"{f.reconnected}/{f.dropped} back {back}; missed {f.missed_while_away}, dup {acc.room.duplicated}; "
            f"others lost {acc.lost_undisturbed}")


def row(result: "RunResult") -> dict[str, str]:
    s, acc = result.scenario, result.socketio
    cells = {"scenario": s.name, "policy": policy_text(result), "transport": s.workload.transport.value,
             "manager": MANAGERS.get(s.topology.broker, s.topology.broker.value)}
    if acc is None:
        unknown = ("handshakes ok", 'HTTP 400 "Session ID unknown"', "clients per replica", "max/min",
                   "cross-server room delivery", "failover (killed replica)")
        return {**cells, **dict.fromkeys(unknown, "?"), "verdict": verdict_text(result)}
    st = acc.stickiness
    return {
        **cells,
        "handshakes ok": f"{acc.joined}/{acc.clients}",
        'HTTP 400 "Session ID unknown"': (f"{st.session_unknown} ({st.pollers_with_400}/{st.pollers} pollers)"
                                          if st.pollers else str(st.session_unknown)),
        "clients per replica": " · ".join(str(n) for n in acc.placement.values()),
        "max/min": _ratio(acc.placement_max_min),
        "cross-server room delivery": _pct(acc.room.cross_delivered, acc.room.cross_expected),
        "failover (killed replica)": failover_text(acc),
        "verdict": verdict_text(result),
    }


def table(results: list["RunResult"]) -> str:
    """A Markdown table, one row per Socket.IO run, then the reasons and how stickiness was rendered."""
    rows = [row(r) for r in results]
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[h]) for h, c in zip(heads, cells)) + " |"

    out = [line(heads), "|" + "|".join("-" * (widths[h] + 2) for h in heads) + "|"]
    out += [line([r[h] for h in heads]) for r in rows]
    for r in results:
        if r.verdict.reason:
            out.append(f"{r.scenario.name}: {r.verdict.reason}")
    for note in dict.fromkeys(r.sticky for r in results if r.sticky):
        out.append(f"cookie stickiness — {note}")
    return "\n".join(out)


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinity: say it in words."""
    return "inf" if value == math.inf else value


def to_json(result: "RunResult") -> dict[str, Any]:
    """The `socketio` section of result.json."""
    s, acc = result.scenario, result.socketio
    out: dict[str, Any] = {
        "app": "python-socketio", "transport": s.workload.transport.value,
        "manager": MANAGERS.get(s.topology.broker, s.topology.broker.value),
        "balance": s.topology.balance.value, "sticky": result.sticky or None,
        "source_subnets": s.workload.source_subnets, "verdict_text": verdict_text(result),
    }
    if acc is None:
        return out
    f = asdict(acc.failover)
    f["reconnect_max_s"] = _finite(acc.failover.reconnect_max_s)
    return {
        **out,
        "clients": acc.clients, "joined": acc.joined,
        "placement": acc.placement, "replicas_used": acc.replicas_used,
        "placement_max_min": _finite(acc.placement_max_min),
        "http": asdict(acc.stickiness),
        "room": {"sent": acc.room.sent, "acknowledged": acc.room.sent - acc.unacked, "unacked": acc.unacked,
                 "expected": acc.room.expected, "delivered": acc.room.delivered, "lost": acc.room.lost,
                 "lost_undisturbed": acc.lost_undisturbed, "lost_dropped": acc.lost_dropped,
                 "duplicated": acc.room.duplicated, "unexpected": acc.room.unexpected, "extra": acc.extra,
                 "same_server": [acc.room.same_delivered, acc.room.same_expected],
                 "cross_server": [acc.room.cross_delivered, acc.room.cross_expected]},
        "failover": f,
    }
