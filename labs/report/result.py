"""What one run leaves behind: the RunResult, its result.json and its report.md (written by `files`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..accounting.checker import Accounting
from ..accounting.history import History
from ..accounting.verdict import Validity, Verdict
from ..protocols.base import Outcome, ProtocolAdapter
from ..scenario import Metric, Scenario


@dataclass
class RunResult:
    scenario: Scenario
    protocol: ProtocolAdapter
    run_id: str
    stamp: str
    history: History
    #: None: the checker crashed, and the run contributes no figure
    accounting: Accounting | None
    #: every metric measured for this run (None: undefined)
    values: dict[Metric, float | None]
    verdict: Verdict
    #: the balancer's rendered config (nginx.conf or haproxy.cfg)
    balancer_conf: str
    #: how cookie stickiness was built by the balancer in use ("" when the policy is not cookie)
    sticky: str = ""
    images: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    replicas: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    #: container states after the workload and its faults (every fault healed: all running)
    states: dict[str, str] = field(default_factory=dict)
    #: which node ran each container ("local": the one engine)
    nodes: dict[str, str] = field(default_factory=dict)
    #: on a Swarm: (seconds since the first send, what Swarm said changed), as the run went
    swarm_events: list[tuple[float, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict.validity is Validity.PASS

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.scenario, self.history, self.accounting or Accounting(), self.sticky)

    @property
    def verdict_text(self) -> str:
        return self.verdict.text(failure=self.scenario.failure)


def finite(value: Any) -> Any:
    """JSON has no infinity: say it in words (at any depth)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def to_json(result: RunResult) -> dict[str, Any]:
    """result.json: strict JSON (infinities in words)."""
    return finite(_summary(result))


def _summary(result: RunResult) -> dict[str, Any]:
    a, s = result.accounting, result.scenario
    counts = None if a is None else {k: v for k, v in asdict(a).items()
                                     if k not in {"latencies_ms", "change_latencies_ms", "placement", "failover", "reached"}}
    return {
        "scenario": s.name,
        "description": s.description,
        "run_id": result.run_id,
        "stamp": result.stamp,
        "app": s.topology.app.value,
        "topology": {"replicas": s.topology.replicas, "broker": s.topology.broker.value,
                     "balance": s.topology.balance.value, "balancer": s.topology.balancer.value},
        "workload": asdict(s.workload),
        "counts": counts,
        "latency_ms": None if a is None else {"p50": a.percentile_ms(0.5), "p99": a.percentile_ms(0.99),
                                              "max": a.percentile_ms(1.0)},
        "placement": None if a is None else a.placement,
        "failover": None if a is None else asdict(a.failover),
        "reached": [] if a is None else [asdict(span) for span in a.reached],
        "metrics": {m.value: v for m, v in result.values.items()},
        "expect": [{"metric": c.metric.value, "declared": str(c.bound), "value": c.value,
                    "holds": c.holds} for c in result.verdict.checks],
        "verdict": result.verdict.validity.value,
        "verdict_text": result.verdict_text,
        "verdict_reason": result.verdict.reason,
        "images": result.images,
        "versions": result.versions,
        "timings_s": result.timings,
        "replicas": result.replicas,
        "container_states_after_faults": result.states,
        "nodes": result.nodes,
        "swarm_events": [{"t_s": round(t, 3), "what": what} for t, what in result.swarm_events],
        "faults": [asdict(f) for f in result.history.faults],
        **result.protocol.to_json(result.outcome),
    }


#: the pictures beside report.md (drawn by `plots`, written with the rest by `files`)
TIMELINE_PNG, PLACEMENT_PNG = "timeline.png", "placement.png"


def markdown(result: RunResult, table: str) -> str:
    s = result.scenario
    lines = [f"# {s.name} — {result.verdict_text}", "", s.description.strip(), "", table, "",
             "## Deliveries per second", "",
             "Messages sent and deliveries per second since the first send; each fault shaded.", "",
             f"![deliveries per second]({TIMELINE_PNG})", "",
             "## Placement (clients per replica)", "", f"![clients per replica]({PLACEMENT_PNG})", ""]
    lines += [f"- {name}: {n}" for name, n in (result.accounting.placement if result.accounting else {}).items()]
    lines += ["", "## Declared expectation", ""]
    lines += [f"- {c.metric.value} {c.bound}: measured {c.value if c.value is not None else 'undefined'}"
              f" — {'holds' if c.holds else 'does not hold'}" for c in result.verdict.checks]
    lines += ["", "## Images", ""] + [f"- {k}: {v}" for k, v in result.images.items()]
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in result.versions.items()]
    lines += ["", "## Timings", ""] + [f"- {k}: {v:.2f} s" for k, v in result.timings.items()]
    if any(node != "local" for node in result.nodes.values()):
        lines += ["", "## Nodes", ""] + [f"- {name}: {node}" for name, node in result.nodes.items()]
        lines += ["", "## What Swarm said (seconds since the first send)", ""]
        lines += [f"- {t:+.2f} s {what}" for t, what in result.swarm_events]
    return "\n".join(lines) + "\n"
