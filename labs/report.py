"""What a run leaves behind: results/<scenario>/<UTC stamp>/ and the terminal table.

A results directory is written under a hidden name and renamed when complete, so a failed or interrupted
run never leaves a half-written one.
"""

from __future__ import annotations

import enum
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checker import Accounting, Validity, Verdict
from .history import History
from .scenario import AppKind, Scenario
from .sio_checker import SioAccounting


@dataclass
class RunResult:
    scenario: Scenario
    run_id: str
    stamp: str
    accounting: Accounting
    verdict: Verdict
    history: History
    nginx_conf: str
    images: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    replicas: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    #: container states after the workload and its faults (every fault healed: all running)
    states: dict[str, str] = field(default_factory=dict)
    #: a Socket.IO run's own accounting (stickiness, placement, failover); None otherwise
    socketio: SioAccounting | None = None
    #: how cookie stickiness was rendered for the nginx in use ("" when the policy is not cookie)
    sticky: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict.validity is Validity.PASS


def _pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "0/0 (n/a)"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def row(result: RunResult) -> dict[str, str]:
    a, s = result.accounting, result.scenario
    return {
        "pattern": s.name,
        "broker": s.topology.broker.value,
        "replicas": str(s.topology.replicas),
        "clients": str(s.workload.clients),
        "msgs sent": str(a.sent),
        "expected deliveries": str(a.expected),
        "delivered": str(a.delivered),
        "lost": str(a.lost),
        "dup": str(a.duplicated),
        "same-server delivered": _pct(a.same_delivered, a.same_expected),
        "cross-server delivered": _pct(a.cross_delivered, a.cross_expected),
        "p50 / p99 ms": f"{_ms(a.percentile_ms(0.5))} / {_ms(a.percentile_ms(0.99))}",
        "verdict": result.verdict.validity.value,
    }


def fault_row(result: RunResult) -> dict[str, str]:
    a, s = result.accounting, result.scenario
    faults = ", ".join(f"{f.kind.value} {f.target}" for f in s.faults) or "none"
    return {
        "fault": faults,
        "broker": s.topology.broker.value,
        "sent": str(a.sent),
        "expected deliveries": str(a.expected),
        "delivered": str(a.delivered),
        "lost": str(a.lost),
        "lost in / outside fault": f"{a.lost_in_fault} / {a.lost_outside_fault}",
        "trimmed": str(a.trimmed),
        "duplicated": str(a.duplicated),
        "nacked": str(a.nacked),
        "recovered after reconnect": str(a.recovered),
        "max gap s": f"{a.max_gap_s:.2f}",
        "verdict": result.verdict.validity.value,
    }


def table(results: list[RunResult]) -> str:
    """A Markdown table, one row per run, aligned for the terminal (the fault view when every run has
    faults). Socket.IO runs get their own table (labs/sio_report.py), after this one."""
    if any(r.scenario.topology.app is AppKind.SOCKETIO for r in results):
        from .sio_report import table as socketio_table

        rest = [r for r in results if r.scenario.topology.app is not AppKind.SOCKETIO]
        sio = [r for r in results if r.scenario.topology.app is AppKind.SOCKETIO]
        return "\n\n".join(([table(rest)] if rest else []) + [socketio_table(sio)])
    rows = [(fault_row if all(r.scenario.faults for r in results) else row)(r) for r in results]
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads}
    line = lambda cells: "| " + " | ".join(c.ljust(widths[h]) for h, c in zip(heads, cells)) + " |"  # noqa: E731
    out = [line(heads), "|" + "|".join("-" * (widths[h] + 2) for h in heads) + "|"]
    out += [line([r[h] for h in heads]) for r in rows]
    for r in results:
        if r.verdict.reason:
            out.append(f"{r.scenario.name}: {r.verdict.reason}")
    return "\n".join(out)


def to_json(result: RunResult) -> dict[str, Any]:
    a, s = result.accounting, result.scenario
    return {
        "scenario": s.name,
        "description": s.description,
        "run_id": result.run_id,
        "stamp": result.stamp,
        "topology": {"replicas": s.topology.replicas, "broker": s.topology.broker.value,
                     "balance": s.topology.balance.value},
        "workload": asdict(s.workload),
        "counts": {k: v for k, v in asdict(a).items() if k not in {"latencies_ms", "placement"}},
        "latency_ms": {"p50": a.percentile_ms(0.5), "p99": a.percentile_ms(0.99),
                       "max": max(a.latencies_ms) if a.latencies_ms else None},
        "placement": a.placement,
        "expect": [{"metric": c.metric.value, "declared": str(c.bound), "value": c.value, "holds": c.holds}
                   for c in result.verdict.checks],
        "verdict": result.verdict.validity.value,
        "verdict_reason": result.verdict.reason,
        "images": result.images,
        "versions": result.versions,
        "timings_s": result.timings,
        "replicas": result.replicas,
        "container_states_after_faults": result.states,
        "faults": [asdict(f) for f in result.history.faults],
        **_socketio_json(result),
    }


def _socketio_json(result: RunResult) -> dict[str, Any]:
    if result.scenario.topology.app is not AppKind.SOCKETIO:
        return {}
    from .sio_report import to_json as socketio_json

    return {"socketio": socketio_json(result)}


def markdown(result: RunResult) -> str:
    s = result.scenario
    lines = [f"# {s.name} — {result.verdict.validity.value}", "", s.description.strip(), "",
             table([result]), "", "## Placement (clients per replica)", ""]
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


def write(result: RunResult, results_dir: Path) -> Path:
    final = results_dir / result.scenario.name / result.stamp
    partial = final.with_name(f".{result.stamp}.partial")
    partial.mkdir(parents=True, exist_ok=False)
    try:
        (partial / "result.json").write_text(json.dumps(to_json(result), indent=2, default=_plain) + "\n")
        (partial / "history.json").write_text(json.dumps(result.history.to_dict()) + "\n")
        (partial / "report.md").write_text(markdown(result))
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
