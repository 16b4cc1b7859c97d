"""What the storm bench concludes over its runs, and the files it writes: storm.json, storm.csv (one row per
setting), storm-series.csv and storm.png (connections per replica over time), storm.md. Pure but for `write`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ...report.plots import replicas_over_time_png
from ..connections.plan import median_of
from ..connections.report import fmt
from .plan import Setting

#: refused attempts, in the table's classes (anything else is "other")
REFUSED = ("http 502", "http 503", "timeout", "reset", "refused")
CSV_FIELDS = ("setting", "first_s", "max_s", "randomization", "runs", "connections", "dropped", "never_back",
              "back_50_s", "back_95_s", "back_100_s", "attempt_p95_s", "attempts_peak_per_s", "accepted_peak_per_s",
              "replica_peak_per_s", "refused", "http_502", "http_503", "timeout", "reset", "refused_conn",
              "other_refused", "ticker_owed", "ticker_lost", "ticker_missed_away", "ticker_unacked",
              "ticker_delay_p99_s", "ticker_delay_max_s", "subscribe_peak_per_s", "subscribe_calls", "busiest",
              "host_busy_mean", "unmeasured_mean")


def _median(runs: list[dict[str, Any]], get: Any) -> float | None:
    return median_of([get(r) for r in runs])


def others(cores: dict[str, dict[str, float]]) -> float | None:
    """Cores the host spent on average beyond every measured process and the kernel's software interrupts:
    any other work on the machine (a shared machine's other tenants)."""
    if "host busy" not in cores:
        return None
    return round(max(0.0, cores["host busy"]["mean"] - sum(v["mean"] for k, v in cores.items()
                                                          if not k.startswith("host"))), 3)


def busiest(cores: dict[str, dict[str, float]]) -> list[tuple[str, float]]:
    """Processes by the most cores they used between two samples of the wave, the busiest first."""
    procs = [(k, v["peak"]) for k, v in cores.items() if not k.startswith("host")]
    return sorted(procs, key=lambda kv: -kv[1])


def row(setting: Setting, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting's figures: medians over its runs (100% back: None when any run left a client out)."""
    replicas = list(runs[0]["replica_peak_per_s"])
    refused = [r["refused"] for r in runs]
    cores = {k: _median(runs, lambda r, k=k: r["cores"].get(k, {}).get("peak"))
             for k in runs[0]["cores"]}
    return {
        "setting": setting.describe(), "name": setting.name, "first_s": setting.initial, "max_s": setting.maximum,
        "randomization": setting.randomization, "runs": len(runs), "connections": runs[0]["connections"],
        "connected": min(r["connected"] for r in runs),
        "dropped": _median(runs, lambda r: r["dropped"]), "never_back": sum(r["never_back"] for r in runs),
        "back_50_s": _median(runs, lambda r: r["back_50_s"]), "back_95_s": _median(runs, lambda r: r["back_95_s"]),
        "attempt_p95_s": _median(runs, lambda r: r.get("attempt_p95_s")),
        "back_100_s": (None if any(r["back_100_s"] is None for r in runs)
                       else _median(runs, lambda r: r["back_100_s"])),
        "attempts_peak_per_s": _median(runs, lambda r: r["attempts_peak_per_s"]),
        "accepted_peak_per_s": _median(runs, lambda r: r["accepted_peak_per_s"]),
        "replica_peak_per_s": {n: _median(runs, lambda r, n=n: r["replica_peak_per_s"][n]) for n in replicas},
        "refused": _median(runs, lambda r: sum(r["refused"].values())),
        **{k.replace(" ", "_").replace("refused", "refused_conn"): median_of([f.get(k, 0) for f in refused])
           for k in REFUSED},
        "other_refused": median_of([sum(v for k, v in f.items() if k not in REFUSED) for f in refused]),
        "refused_kinds": sorted({k for f in refused for k in f}),
        "ticker_owed": _median(runs, lambda r: r["ticker"]["owed"]),
        "ticker_lost": _median(runs, lambda r: r["ticker"]["lost"]),
        "ticker_missed_away": _median(runs, lambda r: r["ticker"]["missed_away"]),
        "ticker_unacked": _median(runs, lambda r: r["ticker"].get("unacked")),
        "ticker_delay_p99_s": _median(runs, lambda r: r["ticker"].get("delay_p99_s")),
        "ticker_delay_max_s": _median(runs, lambda r: r["ticker"].get("delay_max_s")),
        "subscribe_peak_per_s": _median(runs, lambda r: r["subscribe"]["peak_per_s"]),
        "subscribe_calls": _median(runs, lambda r: r["subscribe"]["calls"]),
        "cores_peak": cores,
        "busiest": ", ".join(f"{k} {v:.2f}" for k, v in busiest({k: {"peak": v or 0.0} for k, v in cores.items()})[:2]),
        "host_busy_peak": cores.get("host busy"),
        "host_busy_mean": _median(runs, lambda r: r["cores"].get("host busy", {}).get("mean")),
        "unmeasured_mean": _median(runs, lambda r: others(r["cores"])),
    }


def markdown(result: dict[str, Any]) -> str:
    m, lay = result["machine"], result["layout"]
    down = result["down_s"]
    again = "once every client was back" if down is None else f"{down:g} s after the SIGKILL"
    trigger = f"SIGKILL {result['target']}, started again {again}"
    if result["balancer"] == "nginx":
        front = (f"nginx tries a replica for {result['upstream_timeout_ms']} ms before the next "
                 f"(proxy_connect_timeout) and leaves one out after " + (
                     "no number of failures (max_fails=0)" if not result.get("max_fails")
                     else f"{result['max_fails']} failure(s) for 10 s (max_fails)"))
    else:
        front = (f"HAProxy tries a replica for {result['upstream_timeout_ms']} ms (timeout connect), then once "
                 "more on another (retries 1, option redispatch)")
    lines = [
        f"# Reconnect storm: {result['connections']:,} clients, {result['replicas']} replicas behind "
        f"{result['balancer']}, Redis Pub/Sub ({m['cpus']} cores)", "",
        f"Trigger: {trigger}; {front}. Every client reconnects with the setting's backoff (socket.io-client's formula). "
        f"Medians of {result['runs']} run(s) per setting; times are seconds after the first drop. Peaks: the most "
        f"in any one second. Layout: {lay['load_processes']} load processes, {lay['nginx_workers']} balancer workers, "
        f"via {lay['via']}. The broadcast room: every {result['ticker']['every']}th client, "
        f"{result['ticker']['rate']:g} messages/s.", "",
        "| setting | runs | dropped | back 50% | 95% | 100% | never back | one attempt, 95% (s) | attempts/s at the balancer (peak) "
        "| handshakes/s per replica (peak) | refused: 502 / 503 / timeout / reset / refused / other "
        "| broadcast lost / owed (missed while away; unacked) | broadcast delay p99 / max | SUBSCRIBE/s (peak) "
        "| busiest processes (cores, peak) | host busy, mean cores (no measured process) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        per = " / ".join(f"{fmt(v, '{:,.0f}')}" for v in r["replica_peak_per_s"].values())
        lines.append(
            f"| {r['setting']} | {r['runs']} | {fmt(r['dropped'], '{:,.0f}')} | {fmt(r['back_50_s'], '{:.2f}')} "
            f"| {fmt(r['back_95_s'], '{:.2f}')} | {fmt(r['back_100_s'], '{:.2f}')} | {r['never_back']} "
            f"| {fmt(r['attempt_p95_s'], '{:.2f}')} "
            f"| {fmt(r['attempts_peak_per_s'], '{:,.0f}')} | {per} "
            f"| {' / '.join(fmt(r[k], '{:,.0f}') for k in ('http_502', 'http_503', 'timeout', 'reset', 'refused_conn', 'other_refused'))} "
            f"| {fmt(r['ticker_lost'], '{:,.0f}')} / {fmt(r['ticker_owed'], '{:,.0f}')} "
            f"({fmt(r['ticker_missed_away'], '{:,.0f}')}; {fmt(r['ticker_unacked'], '{:,.0f}')}) "
            f"| {fmt(r['ticker_delay_p99_s'], '{:.2f}')} / {fmt(r['ticker_delay_max_s'], '{:.2f}')} s "
            f"| {fmt(r['subscribe_peak_per_s'], '{:,.0f}')} "
            f"| {r['busiest'] or '—'} | {fmt(r['host_busy_mean'], '{:.2f}')} ({fmt(r['unmeasured_mean'], '{:.2f}')}) |")
    lines += ["", "Busiest processes: the most cores a process (or `softirq`, the kernel's network work) used "
              "between two readings 0.5 s apart; a replica, a load process and Redis are one thread each.",
              "", "Handshakes per replica: " + ", ".join(result["rows"][0]["replica_peak_per_s"]) + ". "
              "Refused attempts of other kinds: " + (", ".join(sorted({k for r in result["rows"]
                                                                        for k in r["refused_kinds"]})) or "none") + ".",
              "", f"Machine: {m['platform']}, {m['cpus']} cores, {m['memory_gib']} GiB, Docker {m['docker']}, "
              f"Python {m['python']}.", ""]
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> str:
    """storm.json, storm.csv, storm-series.csv, storm.png and storm.md in `out`; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "storm.json").write_text(json.dumps(result, indent=2) + "\n")
    with (out / "storm.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            w.writerow({**r, "setting": r["name"],
                        "replica_peak_per_s": " ".join(f"{k}={fmt(v, '{:.0f}')}" for k, v in r["replica_peak_per_s"].items())})
    replicas = list(result["rows"][0]["replica_peak_per_s"]) if result["rows"] else []
    with (out / "storm-series.csv").open("w", newline="") as f:
        w2 = csv.writer(f)
        w2.writerow(["setting", "run", "t", *replicas])
        for name, runs in result["results"].items():
            for k, run in enumerate(runs, 1):
                s = run["series"]
                for i, t in enumerate(s["t"]):
                    w2.writerow([name, k, t, *(s[r][i] for r in replicas)])
    panels = [(f"{r['setting']}: connections per replica (run 1 of {r['runs']})", result["results"][r["name"]][0]["series"])
              for r in result["rows"]]
    replicas_over_time_png(panels, out / "storm.png", marks=((0.0, "first drop"),),
                           xlabel="seconds after the first drop")
    text = markdown(result)
    (out / "storm.md").write_text(text)
    return text
