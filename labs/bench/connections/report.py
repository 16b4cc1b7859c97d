"""What `bench_connections` concludes from its runs: totals, medians, the nearest limits and what bounded
the run, and the files it writes (connections.json, connections.md). Pure but for `write`."""

from __future__ import annotations

import json
import statistics
from enum import Enum
from pathlib import Path
from typing import Any

from .plan import Layout, Via, median_of, merge


def broadcast_totals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss and times over the messages the senders' replicas acknowledged (each round's figures count
    those only); a nacked message (the replica could not publish it: the client was told) is counted apart,
    not as loss; so is one never answered. Times: medians over the rounds with an acknowledged message."""
    counted = [r for r in rounds if r["acked"]]
    return {"messages": sum(r["messages"] for r in rounds), "acked": sum(r["acked"] for r in rounds),
            "nacked": sum(r["nacked"] for r in rounds), "unanswered": sum(r["unanswered"] for r in rounds),
            "lost": sum(r["lost"] for r in counted), "duplicated": sum(r["duplicated"] for r in rounds),
            "p50_s": median_of([r["p50_s"] for r in counted]),
            "t95_s": median_of([r["t95_s"] for r in counted]), "t100_s": median_of([r["t100_s"] for r in counted])}


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


def plain(value: object) -> object:
    """JSON for what json does not know: an enum by its value (a sizing's balancer, a layout's way in)."""
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write(result: dict[str, Any], out: Path, *, name: str = "connections", intro: tuple[str, ...] = ()) -> None:
    """<name>.json and a short <name>.md beside it (`intro`: lines under its title)."""
    out.mkdir(parents=True, exist_ok=True)
    for run in result["results"]:
        if "ramp" in run:
            run["costs"] = costs(run, result["machine"]["cpus"])
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=plain) + "\n")
    if any(r.get("ramp") for r in result["results"]):
        (out / "ramp.csv").write_text(ramp_csv(result["results"]))
    s, lay = result["summary"], result["layout"]
    kib = s["bytes_per_connection"]
    nodes = per_node(result["results"])
    ports = f"{lay['ports']} nginx port" + ("s" if lay["ports"] != 1 else "")
    lines = [
        f"# {s['connections']} WebSocket connections through nginx ({result['machine']['cpus']} cores)", "",
        *intro,
        f"Setup: {result['setup']['text']}. Layout: {lay['load_processes']} load processes, " + (
            f"{ports} published on 127.0.0.1 ("
            + ("one docker-proxy each" if any(r["held"]["proxies"] for r in result["results"]) else "no docker-proxy: "
               "netfilter") + "), "
            if lay["via"] == Via.PUBLISHED.value else
            f"{ports} reached on its front-network address (no docker-proxy), ") +
        f"{lay['nginx_workers']} nginx workers (reuseport), {lay['replicas']} replicas; "
        f"open-file limit {lay['fd_limit']} per process. Medians of {result['runs']} run(s), "
        f"{result['broadcasts']} rounds each (a round: one message into every room at once).", "",
        "| connected | connect rate | RSS per connection per replica | messages | 50% of a round's deliveries | 95% "
        "| 100% | lost | duplicated | acked / nacked / unanswered |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {s['connected']}/{s['connections']} | {fmt(s['connect_rate'], '{:,.0f}/s')} "
        f"| {fmt(kib and kib / 1024, '{:.1f} KiB')} | {s['messages']} | {fmt(s['p50_s'], '{:.2f} s')} "
        f"| {fmt(s['t95_s'], '{:.2f} s')} | {fmt(s['t100_s'], '{:.2f} s')} "
        f"| {s['lost']} | {s['duplicated']} | {s['acked']} / {s['nacked']} / {s['unanswered']} |", "",
        "Times and loss count the messages the sender's replica acknowledged; a nacked one was refused "
        "(the replica could not publish it, and said so).", "",
        "Per node (medians over runs; CPU: share of all cores while the rounds ran):", "",
        "| node | connections | rooms | publishes | µs inside Redis per publish | CPU |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {fmt(n.get('members'), '{:,.0f}')} | {fmt(n.get('rooms'), '{:,.0f}')} "
          f"| {fmt(n.get('publishes'), '{:,.0f}')} | {fmt(n.get('usec_per_publish'), '{:.1f}')} "
          f"| {fmt(n.get('cpu_share'), '{:.1%}')} |" for name, n in nodes.items()], "",
        *ramp_lines(result["results"][0]),
        *[f"CPU while {phase} (share of all {result['machine']['cpus']} cores, first run): "
          + ", ".join(f"{k} {v:.0%}" for k, v in result["results"][0]["cpu_share"][key].items()) + "\n"
          for phase, key in (("connecting", "connect"), ("holding them idle", "hold"), ("broadcasting", "broadcasts"))
          if key in result["results"][0]["cpu_share"]],
        "Nearest limits (used / limit, busiest run):", "",
        *[f"- {part}: {fraction:.0%}" for part, fraction in result["limits"]], "",
        f"Bound: {result['bound']}", ""]
    (out / f"{name}.md").write_text("\n".join(lines))


def ramp_lines(run: dict[str, Any]) -> list[str]:
    """How the first run opened its connections, what they cost in memory, and the load average."""
    if "ramp" not in run:
        return []
    ramp, mem, avg, cost = run["ramp"], run["memory"], run["loadavg"], run["costs"]
    mode = ramp["mode"]
    how = ("unpaced" if mode["rate"] is None else f"paced at {mode['rate']:,.0f}/s" if not mode["step"]
           else f"stepped from {mode['rate']:,.0f}/s by {mode['step']:,.0f}/s every {mode['window_s']:g} s")
    kib = "{:.1f} KiB"
    return [f"Ramp (first run): {how}; {fmt(ramp['achieved_rate'], '{:,.0f}/s')} on average, the fastest "
            f"window that lost nothing ran at {fmt(ramp['clean_rate'], '{:,.0f}/s')}; "
            + (f"it stopped with {ramp['untried']:,} connections untried ({'; '.join(ramp.get('stopped', []))}); "
               if ramp.get("untried") else "") +
            f"{run['open_after_hold']:,} of {run['connected']:,} still open after {run['hold_s']:g} s held idle.", "",
            f"Memory per connection (first run): nginx {fmt(_kib(mem['nginx_bytes_per_connection']), kib)} (all "
            f"workers), load processes {fmt(_kib(mem['load_bytes_per_connection']), kib)} (whole RSS).", "",
            f"CPU of the bench's own processes (first run): {fmt(cost['us_per_connect'], '{:,.0f} µs')} per "
            f"connection tried while connecting, {fmt(cost['cores_per_10k_held'], '{:.3f}')} cores per 10,000 held "
            f"idle (keepalive); the kernel's network work and the host's other processes are not in these.", "",
            f"Load average (1, 5, 15 min): connected {' '.join(avg['connected'])}, after the hold "
            f"{' '.join(avg['held'])}, after the broadcasts {' '.join(avg['broadcasts'])}.", ""]


#: cpu_share's keys that are not the bench's own processes
NOT_OURS = ("host busy", "everything else")


def costs(run: dict[str, Any], cores: int) -> dict[str, float | None]:
    """What the bench's own processes (load processes, nginx, replicas, broker; the kernel's network work
    and every other process on the host left out) spent: CPU µs per connection tried while connecting (the
    keepalive of those already held included), and cores per 10,000 connections held idle (keepalive)."""
    def ours(phase: str) -> float | None:
        shares = run["cpu_share"].get(phase)
        return sum(v for k, v in shares.items() if k not in NOT_OURS) if shares else None

    tried = run["connections"] - run.get("ramp", {}).get("untried", 0)
    connect, hold = ours("connect"), ours("hold")
    return {"us_per_connect": None if connect is None or tried < 1 else round(connect * cores * run["connect_s"]
                                                                                / tried * 1e6, 1),
            "cores_per_10k_held": None if hold is None or not run.get("open_after_hold") or not run.get("hold_s")
            else round(hold * cores / run["open_after_hold"] * 10_000, 4)}


def ramp_csv(runs: list[dict[str, Any]]) -> str:
    """Every run's ramp, a row per window: the group's rate, what it opened, failed and closed, the slowest
    median handshake (empty: none)."""
    keys = ("t_s", "rate", "opened", "failed", "closed", "median_s")
    rows = [",".join(("run", *keys))]
    for k, run in enumerate(runs, 1):
        for w in run.get("ramp", {}).get("windows", []):
            rows.append(",".join([str(k), *("" if w[key] is None else str(w[key]) for key in keys)]))
    return "\n".join(rows) + "\n"


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs (loss and duplicates: totals)."""
    per = [r["bytes_per_connection"] for run in runs for r in run["replicas"].values()
           if r["bytes_per_connection"] is not None]
    return {"connections": runs[0]["connections"], "connected": min(r["connected"] for r in runs),
            "connect_rate": median_of([r["connect_rate"] for r in runs]),
            "bytes_per_connection": statistics.median(per) if per else None,
            "messages": sum(r["messages"] for r in runs), "p50_s": median_of([r["p50_s"] for r in runs]),
            "t95_s": median_of([r["t95_s"] for r in runs]), "t100_s": median_of([r["t100_s"] for r in runs]),
            "lost": sum(r["lost"] for r in runs), "duplicated": sum(r["duplicated"] for r in runs),
            "acked": sum(r["acked"] for r in runs), "nacked": sum(r["nacked"] for r in runs),
            "unanswered": sum(r["unanswered"] for r in runs),
            "closed_while_held": sum(sum(r.get("closed_while_held", {}).values()) for r in runs)}


def per_node(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each replica (connections, rooms) and broker node (publishes, µs per publish), with its CPU share
    while the rounds ran: medians over the runs, by node name."""
    names = list(runs[0]["replicas"]) + list(runs[0].get("nodes", {}))
    out: dict[str, dict[str, float | None]] = {}
    for name in names:
        rows = [{**r["replicas"].get(name, {}), **r.get("nodes", {}).get(name, {}),
                 "cpu_share": r["cpu_share"]["broadcasts"].get(name)} for r in runs]
        keys = ("members", "rooms", "cpu_share") if name in runs[0]["replicas"] else (
            "publishes", "usec_per_publish", "cpu_share")
        out[name] = {k: median_of([row.get(k) for row in rows]) for k in keys}
    return out


def rebuilt(runs: list[dict[str, Any]]) -> str:
    """The replicas' broker subscribers found deaf and rebuilt (what a rebuild drops in flight is lost)."""
    counts = {k: sum(c.get(k, 0) for r in runs for c in r.get("replica_counters", {}).values())
              for k in ("deaf_detected", "subscriber_rebuilds")}
    return f"; replicas report {', '.join(f'{k} {v}' for k, v in counts.items())}" if any(counts.values()) else ""


def bound(runs: list[dict[str, Any]], limits: list[tuple[str, float]]) -> str:
    failed = [r for r in runs if r["failed"] or r["lost"]]
    if failed:
        errors = merge([r["connect_errors"] for r in failed])
        top = ", ".join(f"{k} x{v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:3])
        nginx = merge([r.get("nginx_errors", {}) for r in failed])
        # a load process counts closed connections from its start: the last broadcast has them all
        closed = merge([r["broadcasts"][-1]["closed_connections"] for r in failed if r["broadcasts"]])
        busy = median_of([r["cpu_share"]["connect"].get("host busy") for r in failed])
        untried = sum(r.get("ramp", {}).get("untried", 0) for r in failed)
        return (f"{sum(r['failed'] for r in failed) - untried} connection(s) failed"
                + (f" and {untried} were never tried (the ramp stopped: "
                   f"{'; '.join(sorted({s for r in failed for s in r['ramp'].get('stopped', [])}))})" if untried else "")
                + f", {sum(r['lost'] for r in failed)} receipt(s) lost; errors: {top or 'none reported'}"
                + (f"; nginx says: {', '.join(f'{k} x{v}' for k, v in nginx.items())}" if nginx else "")
                + (f"; connections closed by close code: {closed}" if closed else "")
                + rebuilt(failed)
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
