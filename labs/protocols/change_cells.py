"""The detail table of runs under topology changes (a deploy: scale-out, scale-in, a rolling restart, a
balancer reload), nginx's and HAProxy's side by side: what each change was, what it cut, who came back and
where, what was lost or replayed, and how slow delivery was meanwhile. A figure that was not measured is "-", never 0."""

from __future__ import annotations

from ..accounting.changes import close_codes
from ..accounting.history import History
from ..scenario import Fault, FaultKind, Scenario
from .base import Outcome
from .cells import ms

CHANGES_KIND = "WebSocket under topology changes"


def has_changes(s: Scenario) -> bool:
    return any(f.kind.changes_topology for f in s.faults)


def change_text(f: Fault, *, swarm: bool = False) -> str:
    """`scale-out app-4 (+1, shutdown 1s)`, `rolling-restart all (SIGKILL, drained, 1 at a time)`; on a Swarm
    `rolling-restart all (start-first, SIGTERM, not drained, 1 at a time, delay 0.5s)`."""
    knobs = []
    if f.kind is FaultKind.SCALE_OUT:
        knobs.append(f"+{f.count}")
    if f.kind is FaultKind.ROLLING_RESTART:
        knobs += [f.order.value] if swarm else []
        knobs += ["SIGTERM" if f.graceful else "SIGKILL", "drained" if f.drain else "not drained",
                  f"{f.max_unavailable} at a time"]
        if f.step_pause:
            knobs.append(f"{'delay' if swarm else 'pause'} {f.step_pause:g}s")
    if f.kind.reloads_lb:
        knobs.append(f"shutdown {f.shutdown_timeout:g}s" if f.shutdown_timeout is not None else "no shutdown timeout")
    return f"{f.kind.value} {f.target} ({', '.join(knobs)})"


def change_columns(outcome: Outcome) -> dict[str, str]:
    a, s = outcome.accounting, outcome.scenario
    f = a.failover
    remap = a.remap
    return {
        "change": "; ".join(change_text(x, swarm=s.swarm is not None) for x in s.faults),
        "balancer": s.topology.balancer.value, "broker": s.topology.broker.value,
        "balance": s.topology.balance.value, "clients": str(s.workload.clients), "drops": str(a.drops),
        "back": f"{f.reconnected}/{f.dropped}" if f.dropped else "-", "never back": str(a.never_back),
        "reconnect max s": "-" if f.reconnect_max_s is None else f"{f.reconnect_max_s:.2f}",
        "remapped": "-" if remap.ratio is None else f"{remap.moved}/{remap.reconnected} ({remap.ratio:.2f})",
        "lost in / outside": f"{a.lost_in_fault} / {a.lost_outside_fault}", "recovered": str(a.recovered),
        "duplicated": str(a.duplicated), "p99 in change ms": ms(a.p99_in_change_ms),
        "close codes": codes(outcome.history),
    }


def codes(h: History) -> str:
    """`1001 ×4` for the connections the changes cut; "-" when they cut none."""
    found = close_codes(h)
    return ", ".join(f"{'?' if code is None else code} ×{n}" for code, n in found.items()) or "-"
