"""The summary every command prints first: one row per run with what every run has (verdict, deliveries,
latency) and the one figure the scenario is about, chosen from what the scenario declares."""

from __future__ import annotations

import math

from ..accounting.checker import Accounting
from ..protocols.cells import latency, pct
from ..scenario import CLUSTER_ONLY, SOCKETIO_ONLY, WEBSOCKET_ONLY, Bound, Metric, Scenario
from ..scenario.expect import RATIO, SECONDS_OR_NEVER
from .result import RunResult

#: what the summary shows in columns of its own
SHOWN = frozenset({Metric.DELIVERED_RATIO, Metric.LOST, Metric.LOST_OUTSIDE_FAULT, Metric.DUPLICATED})
#: what only some protocols or brokers measure, beyond the room accounting every run has
OWN = CLUSTER_ONLY | SOCKETIO_ONLY | WEBSOCKET_ONLY
#: the guards nearly every scenario declares, whatever it is about: nothing misrouted or unexpected, every
#: fault's damage recovered, every message sent and acknowledged, every handshake answered
GUARDS = frozenset({Metric.MISROUTED, Metric.NOT_MEMBER, Metric.UNEXPECTED, Metric.LATE_RECOVERIES,
                    Metric.UNSENT, Metric.UNACKED, Metric.RECONNECTS, Metric.HANDSHAKE_OK_RATIO})


def _rank(metric: Metric, bound: Bound) -> int:
    """How plainly a declared bound says what the scenario is about (lowest first)."""
    if metric in GUARDS:
        return 5
    if metric in SHOWN:
        return 4
    if bound.min != bound.max:  # a range: "at least one lost in the fault", "at most 30 s"
        return 0
    if bound.min == 0 and metric.domain.integer:  # none of it
        return 3
    if bound.min == 1 and metric.domain is RATIO:  # all of it
        return 2
    return 1  # an exact figure: 240 published to nobody, 3 replicas used, no cross-server delivery


def key_metric(scenario: Scenario) -> Metric | None:
    """The metric the scenario is about, from its [expect]: the first it declares beyond the summary's own
    figures and the common guards; a range before an exact value, an exact value before "all of it" (a
    ratio of 1), that before "none of it" (a count of 0), and among equals one that only its protocol or
    broker measures before the room accounting's. Failing those, the first of the summary's figures it
    declares, then the first guard; None for an empty [expect]."""
    declared = list(scenario.expect.items())
    if not declared:
        return None
    order = [(_rank(metric, bound), metric not in OWN, i) for i, (metric, bound) in enumerate(declared)]
    return declared[min(order)[2]][0]


def figure(metric: Metric, value: float | None) -> str:
    """A metric's value as a cell: a count whole, bytes with thousands separators, else two decimals;
    "-" when it was not measured; infinity as "never" for seconds, "∞" otherwise."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "never" if metric.domain is SECONDS_OR_NEVER else "∞"
    if metric.domain.integer:
        return f"{value:.0f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def key_figure(result: RunResult) -> str:
    """`name value` of the scenario's key metric ("-" for a value not measured)."""
    metric = key_metric(result.scenario)
    if metric is None:
        return "-"
    return f"{metric.value} {figure(metric, result.values.get(metric))}"


def _lost(a: Accounting, *, faulted: bool) -> str:
    """Deliveries lost; under faults, how many of them outside what the faults reached."""
    return f"{a.lost} ({a.lost_outside_fault} outside the fault)" if faulted else str(a.lost)


def summary_row(result: RunResult, *, balancer: bool = False) -> dict[str, str]:
    """One run's row (with the balancer that ran it, when `balancer`: runs on nginx and HAProxy side by side);
    a run whose checker crashed has no figure but its verdict."""
    a = result.accounting
    row = {"scenario": result.scenario.name,
           **({"balancer": result.scenario.topology.balancer.value} if balancer else {}),
           "verdict": result.verdict_text}
    if a is None:
        cells = dict.fromkeys(("delivered", "lost", "duplicated", "p50 / p99 ms"), "-")
    else:
        cells = {"delivered": pct(a.delivered, a.expected), "lost": _lost(a, faulted=bool(result.scenario.faults)),
                 "duplicated": str(a.duplicated), "p50 / p99 ms": latency(a)}
    return {**row, **cells, "key figure": key_figure(result)}
