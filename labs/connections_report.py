"""What `bench_connections` concludes from its runs: totals, medians, the nearest limits and what bounded
the run, and the files it writes (connections.json, connections.md). Pure but for `write`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .connections import Layout, Via, median_of


def broadcast_totals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss and times over the broadcasts the sender's replica acknowledged; a nacked one (the replica
    could not publish it: the client was told) is counted apart, not as loss; so is one never answered."""
    acked = [r for r in rounds if r["answer"] == "ack"]
    return {"acked": len(acked), "nacked": sum(r["answer"] == "nack" for r in rounds),
            "unanswered": sum(r["answer"] is None for r in rounds),
            "lost": sum(r["lost"] for r in acked), "duplicated": sum(r["duplicated"] for r in rounds),
            "t95_s": median_of([r["t95_s"] for r in acked]), "t100_s": median_of([r["t100_s"] for r in acked])}


def merge(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def usage(run: dict[str, Any], layout: Layout) -> dict[str, tuple[float, float]]:
    """(used, limit) for every part that could bound the run."""
    held, host = run["held"], run["held"]["host"]
    workers = [p["files"] for p in held["nginx"]] or [-1]
    out = {
        "open files, busiest load process": (max(p["files"] or 0 for p in held["load"]), layout.fd_limit),
        "open files, busiest docker-proxy": (max([p["files"] or 0 for p in held["proxies"].values()] or [-1]),
                                             layout.fd_limit),
        "open files, busiest nginx worker": (max(workers), layout.fd_limit),
        "connections, busiest replica": (max(r["members"] for r in run["replicas"].values()), layout.fd_limit),
        "ephemeral ports, busiest destination": (max(layout.per("proxy"), layout.per("replica")),
                                                 layout.ephemeral_ports),
        "host memory": (host["mem_total_bytes"] - host["mem_available_bytes"], host["mem_total_bytes"]),
    }
    if host.get("nf_conntrack_max"):
        out["tracked connections (nf_conntrack)"] = (host["nf_conntrack_count"], host["nf_conntrack_max"])
    return out


def write(result: dict[str, Any], out: Path) -> None:
    """connections.json and a short connections.md beside it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "connections.json").write_text(json.dumps(result, indent=2) + "\n")
    s, lay = result["summary"], result["layout"]
    kib = s["bytes_per_connection"]
    lines = [
        f"# {s['connections']} WebSocket connections through nginx ({result['machine']['cpus']} cores)", "",
        f"Layout: {lay['load_processes']} load processes, " + (
            f"{lay['ports']} nginx ports published on 127.0.0.1 (one docker-proxy each), "
            if lay["via"] == Via.PUBLISHED.value else
            f"{lay['ports']} nginx ports reached on its front-network address (no docker-proxy), ") +
        f"{lay['nginx_workers']} nginx workers (reuseport), {lay['replicas']} replicas on Redis PubSub, one room; "
        f"open-file limit {lay['fd_limit']} per process. Medians of {result['runs']} run(s), "
        f"{result['broadcasts']} broadcasts each.", "",
        "| connected | connect rate | RSS per connection per replica | 95% of a broadcast | 100% | lost | duplicated "
        "| broadcasts acked / nacked / unanswered |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['connected']}/{s['connections']} | {fmt(s['connect_rate'], '{:,.0f}/s')} "
        f"| {fmt(kib and kib / 1024, '{:.1f} KiB')} | {fmt(s['t95_s'], '{:.2f} s')} | {fmt(s['t100_s'], '{:.2f} s')} "
        f"| {s['lost']} | {s['duplicated']} | {s['acked']} / {s['nacked']} / {s['unanswered']} |", "",
        "Times and loss count the broadcasts the sender's replica acknowledged; a nacked one was refused "
        "(the replica could not publish it to Redis, and said so).", "",
        *[f"CPU while {phase} (share of all {result['machine']['cpus']} cores, first run): "
          + ", ".join(f"{k} {v:.0%}" for k, v in result["results"][0]["cpu_share"][key].items()) + "\n"
          for phase, key in (("connecting", "connect"), ("broadcasting", "broadcasts"))],
        "Nearest limits (used / limit, busiest run):", "",
        *[f"- {part}: {fraction:.0%}" for part, fraction in result["limits"]], "",
        f"Bound: {result['bound']}", ""]
    (out / "connections.md").write_text("\n".join(lines))


def fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs (loss and duplicates: totals)."""
    per = [r["bytes_per_connection"] for run in runs for r in run["replicas"].values()
           if r["bytes_per_connection"] is not None]
    return {"connections": runs[0]["connections"], "connected": min(r["connected"] for r in runs),
            "connect_rate": median_of([r["connect_rate"] for r in runs]),
            "bytes_per_connection": statistics.median(per) if per else None,
            "t95_s": median_of([r["t95_s"] for r in runs]), "t100_s": median_of([r["t100_s"] for r in runs]),
            "lost": sum(r["lost"] for r in runs), "duplicated": sum(r["duplicated"] for r in runs),
            "acked": sum(r["acked"] for r in runs), "nacked": sum(r["nacked"] for r in runs),
            "unanswered": sum(r["unanswered"] for r in runs)}


def bound(runs: list[dict[str, Any]], limits: list[tuple[str, float]]) -> str:
    failed = [r for r in runs if r["failed"] or r["lost"]]
    if failed:
        errors = merge([r["connect_errors"] for r in failed])
        top = ", ".join(f"{k} x{v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:3])
        nginx = merge([r.get("nginx_errors", {}) for r in failed])
        # a load process counts closed connections from its start: the last broadcast has them all
        closed = merge([r["broadcasts"][-1]["closed_connections"] for r in failed if r["broadcasts"]])
        busy = median_of([r["cpu_share"]["connect"].get("host busy") for r in failed])
        return (f"{sum(r['failed'] for r in failed)} connection(s) failed, {sum(r['lost'] for r in failed)} "
                f"receipt(s) lost; errors: {top or 'none reported'}"
                + (f"; nginx says: {', '.join(f'{k} x{v}' for k, v in nginx.items())}" if nginx else "")
                + (f"; connections closed by close code: {closed}" if closed else "")
                + (f"; the host's CPU was {busy:.0%} busy while connecting" if busy is not None else ""))
    refused = ""
    if any(r["nacked"] or r["unanswered"] for r in runs):
        counters = {k: sum(c[k] for r in runs for c in r["replica_counters"].values())
                    for k in ("publish_failed", "deaf_detected", "subscriber_rebuilds")}
        refused = (f"; {sum(r['nacked'] for r in runs)} broadcast(s) nacked and {sum(r['unanswered'] for r in runs)} "
                   f"unanswered, replicas report {', '.join(f'{k} {v}' for k, v in counters.items())}")
    part, fraction = limits[0]
    busy = median_of([r["cpu_share"]["connect"].get("host busy") for r in runs])
    cpu = (f"; the host's CPU was {busy:.0%} busy while connecting, so the connect rate and broadcast times "
           f"are CPU-bound" if busy is not None and busy >= 0.9 else "")
    return f"nothing failed; the nearest limit was {part} at {fraction:.0%}{cpu}{refused}"
