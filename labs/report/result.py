"""What one run leaves behind: the RunResult, and results/<scenario>/<UTC stamp>/ written from it.

A results directory is written under a hidden name and renamed when complete, so a failed or interrupted
run never leaves a half-written one.
"""

from __future__ import annotations

import enum
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    accounting: Accounting
    #: every metric measured for this run (None: undefined)
    values: dict[Metric, float | None]
    verdict: Verdict
    nginx_conf: str
    #: how cookie stickiness was rendered for the nginx in use ("" when the policy is not cookie)
    sticky: str = ""
    images: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    replicas: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    #: container states after the workload and its faults (every fault healed: all running)
    states: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.validity is Validity.PASS

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.scenario, self.history, self.accounting, self.sticky)

    @property
    def verdict_text(self) -> str:
        return self.verdict.text(failure=self.scenario.failure)


def _finite(value: Any) -> Any:
    """JSON has no infinity: say it in words (at any depth)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def to_json(result: RunResult) -> dict[str, Any]:
    """result.json: strict JSON (infinities in words)."""
    return _finite(_summary(result))  # type: ignore[no-any-return]


def _summary(result: RunResult) -> dict[str, Any]:
    a, s = result.accounting, result.scenario
    counts = {k: v for k, v in asdict(a).items() if k not in {"latencies_ms", "placement", "failover"}}
    return {
        "scenario": s.name,
        "description": s.description,
        "run_id": result.run_id,
        "stamp": result.stamp,
        "app": s.topology.app.value,
        "topology": {"replicas": s.topology.replicas, "broker": s.topology.broker.value,
                     "balance": s.topology.balance.value},
        "workload": asdict(s.workload),
        "counts": counts,
        "latency_ms": {"p50": a.percentile_ms(0.5), "p99": a.percentile_ms(0.99),
                       "max": a.percentile_ms(1.0)},
        "placement": a.placement,
        "failover": asdict(a.failover),
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
        "faults": [asdict(f) for f in result.history.faults],
        **result.protocol.to_json(result.outcome),
    }


def markdown(result: RunResult, table: str) -> str:
    s = result.scenario
    lines = [f"# {s.name} — {result.verdict_text}", "", s.description.strip(), "", table, "",
             "## Placement (clients per replica)", ""]
    lines += [f"- {name}: {n}" for name, n in result.accounting.placement.items()]
    lines += ["", "## Declared expectation", ""]
    lines += [f"- {c.metric.value} {c.bound}: measured {c.value if c.value is not None else 'undefined'}"
              f" — {'holds' if c.holds else 'does not hold'}" for c in result.verdict.checks]
    lines += ["", "## Images", ""] + [f"- {k}: {v}" for k, v in result.images.items()]
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in result.versions.items()]
    lines += ["", "## Timings", ""] + [f"- {k}: {v:.2f} s" for k, v in result.timings.items()]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else str(value)


def write(result: RunResult, results_dir: Path, table: str) -> Path:
    final = results_dir / result.scenario.name / result.stamp
    partial = final.with_name(f".{result.stamp}.partial")
    partial.mkdir(parents=True, exist_ok=False)
    try:
        (partial / "result.json").write_text(
            json.dumps(_finite(to_json(result)), indent=2, default=_plain, allow_nan=False) + "\n")
        (partial / "history.json").write_text(
            json.dumps(_finite(result.history.to_dict()), default=_plain, allow_nan=False) + "\n")
        (partial / "report.md").write_text(markdown(result, table))
        (partial / "nginx.conf").write_text(result.nginx_conf)
        logs = partial / "logs"
        logs.mkdir()
        for name, text in result.logs.items():
            (logs / f"{name}.log").write_text(text)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
