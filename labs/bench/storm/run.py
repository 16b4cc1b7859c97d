"""Reconnect storms (a benchmark, not a test): `python -m labs.bench storm` (`make bench-storm`).

N clients (default 10,000) hold WebSockets through the balancer to 3 replicas on Redis Pub/Sub; then many
connections drop at once (`--trigger kill-replica`: app-1 SIGKILLed and started again, its clients reconnect to
whichever replica the balancer picks; `--trigger restart-balancer`: the balancer SIGKILLed and started again,
everyone reconnects) and every client comes back with the backoff under test (`--settings`, socket.io-client's
formula: labs/scenario/backoff.py). Each setting runs `--runs` times, each on a fresh stack.

Per run, from the clients' own records (every attempt, when it started and ended, how it ended, which replica
welcomed it): seconds after the drop until 50%, 95% and 100% of the dropped clients were back, the peak
attempts per second at the balancer and handshakes per second at each replica, the attempts refused (HTTP
502/503, timeouts, resets), what a low-rate broadcast room lost meanwhile, Redis's SUBSCRIBE calls per second
(read by a meter container on the back network: every connection a replica accepts subscribes to the client's
own channel) and the cores each process used. Writes results/bench/storm-<stamp>/: storm.json, storm.csv (one
row per setting), storm-series.csv and storm.png (connections per replica over time), storm.md.

The layout (load processes, nginx workers and their open files, replicas) is the connection bench's
(`labs.bench.connections.plan.plan_layout`), and so are the load processes' plumbing (`LoadGroup`) and the way
in (`--via bridge`, the default, or `published`).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import time
from typing import Any

from ...console import EXIT_FAIL, EXIT_PASS, Progress
from ...infra import inspect
from ...infra.launch import open_stack
from ...infra.running import RunningStack
from ...infra.sizing import BACKLOG
from ...infra.stack import StackSpec, redis_backend
from ...scenario import Balancer
from ...spec import new_run_id
from ..common import BenchParser, Started, started
from ..connections.load import LoadGroup
from ..connections.plan import CONNTRACK_PER_CONNECTION, Layout, PlanError, Via, assign
from ..connections.run import (
    BROKER_COUNTERS,
    CONNECT_TIMEOUT_MS,
    nginx_reasons,
    replica_figures,
)
from ..connections.setup import layout_for, parse_count
from ..connections.tracking import wait_for_conntrack
from . import wave
from .front import Front, front_for
from .plan import (
    DEFAULT_SETTINGS,
    PRESETS,
    Setting,
    Trigger,
    parse_balancer,
    parse_max_fails,
    parse_positive,
    parse_settings,
    parse_target,
    parse_trigger,
)
from .probes import METER, CpuSampler, engine_pids, meter_backend, others_running
from .report import row, write

DEFAULT_N = 10_000
REPLICAS = 3
#: every this-many-th client is in the broadcast room, which gets this many messages a second
TICKER_EVERY, TICKER_RATE = 50, 5.0
#: the broadcast runs this long before the trigger and after everyone is back
BASELINE_S, TAIL_S = 3.0, 5.0
#: how often the bench asks whether everyone is back
POLL_S = 0.25
#: the wave is over only once this long has passed since the trigger (a drop must be noticed first)
SETTLE_S = 1.0


def balancer_entrance(stack: RunningStack, layout: Layout, front: Front) -> tuple[str, list[int]]:
    """Where the balancer is: its published ports, or its address on the front network (after a restart
    either may have changed)."""
    if layout.via is Via.BRIDGE:
        return str(ipaddress.ip_address(inspect.address(stack, front.name, "front"))), list(layout.listen_ports)
    container = stack.containers[front.name]
    container.reload()
    ports = container.attrs["NetworkSettings"]["Ports"]
    return "127.0.0.1", [int(ports[f"{p}/tcp"][0]["HostPort"]) for p in layout.listen_ports]


def pull(stack: RunningStack, trigger: Trigger, target: str) -> dict[str, float]:
    """Drop the connections: SIGKILL the target (a replica, or the balancer). Returns when each step happened."""
    at = {"trigger": time.monotonic()}
    stack.operations().kill(target)
    at["killed"] = time.monotonic()
    return at


def restore(stack: RunningStack, layout: Layout, load: LoadGroup, front: Front, target: str,
            at: dict[str, float]) -> str:
    """Start the killed target again; a balancer may come back on another address: tell the clients. Returns
    where the balancer is ("" for a replica)."""
    stack.operations().start_again(target)
    at["started"] = time.monotonic()
    if target != front.name:
        return ""
    host, ports = balancer_entrance(stack, layout, front)
    load.tell({"cmd": "entrance", "host": host, "ports": ports})
    return f"{host}:{','.join(map(str, ports))}"


def await_wave(load: LoadGroup, n: int, t0: float, drops_before: int, *, timeout: float) -> float:
    """Until `n` clients (every one that got in) are connected again after drops were seen, or `timeout` s
    after the trigger."""
    while True:
        status = load.ask({"cmd": "status"}, "status", deadline_s=30)
        now = time.monotonic()
        drops, open_ = sum(s["drops"] for s in status), sum(s["open"] for s in status)
        if (drops > drops_before and open_ >= n and now - t0 >= SETTLE_S) or now - t0 > timeout:
            return now
        time.sleep(POLL_S)


def one_run(bench: Started, layout: Layout, setting: Setting, *, front: Front, trigger: Trigger, down_s: float | None,
            open_timeout: float, wave_timeout: float, target: str) -> dict[str, Any]:
    """One stack, N clients in, the trigger pulled, the wave awaited: the run's figures. `target` is the
    container the trigger kills (a replica, or the balancer)."""
    client, images, progress = bench.client, bench.images, bench.progress
    spec = StackSpec(run_id=new_run_id(), replicas=layout.replicas, broker="redis-pubsub",
                     balancer=front.adapter, balancer_conf=front.config, backlog=BACKLOG, images=images,
                     ready_timeout=60.0,
                     extra_nginx_ports=layout.listen_ports[1:] if layout.via is Via.PUBLISHED else (),
                     nofile=layout.fd_limit,
                     backends=(redis_backend(images.redis.tag), meter_backend(images.redis.tag)))
    n = layout.connections
    progress(f"run {spec.run_id}: {n} clients, {setting.describe()}, trigger {trigger.value}")
    with open_stack(client, spec, progress=progress) as stack:
        host, ports = balancer_entrance(stack, layout, front)
        replicas = stack.replica_names()
        attempts = -(-layout.per("load") // layout.concurrency)
        ramp_s = 2 * open_timeout * attempts + 60
        extra = {"ticker_every": TICKER_EVERY, "backoff": list(setting.backoff), "ramp_deadline": ramp_s}
        with LoadGroup(assign(layout), host=host, ports=ports, room="", open_timeout=open_timeout,
                       concurrency=layout.concurrency, module="labs.bench.storm.client", extra=extra) as load:
            progress(f"{layout.load_processes} load process(es) opening {n} connections to {host} "
                     f"({layout.via.value})")
            connected = load.wait_connected(deadline_s=ramp_s + 30)
            ok = sum(c["ok"] for c in connected)
            span = max(c["finished"] for c in connected) - min(c["started"] for c in connected)
            progress(f"connected {ok}/{n} in {span:.1f}s")
            containers = {name: [stack.containers[name].id] for name in (*replicas, front.name, "redis")}
            groups = {**{f"load-{k + 1}": [p.pid] for k, p in enumerate(load.procs)}, **engine_pids()}
            load.tell({"cmd": "ticker", "rate": TICKER_RATE}, who=[0])
            time.sleep(BASELINE_S)
            drops_before = sum(s["drops"] for s in load.ask({"cmd": "status"}, "status", deadline_s=30))
            neighbours = others_running(bench, spec.run_id)
            sampler = CpuSampler(groups, containers)
            sampler.start()
            wall_to_monotonic = time.monotonic() - time.time()
            try:
                steps = pull(stack, trigger, target)
                t0 = steps["trigger"]
                came_back = ""
                if down_s is not None:
                    time.sleep(max(0.0, t0 + down_s - time.monotonic()))
                    came_back = restore(stack, layout, load, front, target, steps)
                back = await_wave(load, ok, t0, drops_before, timeout=wave_timeout)
            finally:
                sampler.done.set()
                sampler.join()
            if "started" not in steps:  # a replica comes back once the wave is over: the engine's work is not in it
                restore(stack, layout, load, front, target, steps)
            progress(f"wave over {back - t0:.1f}s after the trigger")
            time.sleep(TAIL_S)
            load.ask({"cmd": "quiet"}, "quiet", deadline_s=30, who=[0])
            records = load.ask({"cmd": "records"}, "records", deadline_s=60)
            healthz = replica_figures(stack)
    merged = {key: [x for r in records for x in r[key]] for key in ("attempts", "drops", "sent")}
    receipts: dict[str, list[list[Any]]] = {}
    for r in records:
        for mid, rs in r["receipts"].items():
            receipts.setdefault(mid, []).extend(rs)
    answers = {mid: a for r in records for mid, a in r["answers"].items()}
    att, drops = merged["attempts"], merged["drops"]
    # every figure counts from the first drop: the engine takes a moment to kill a container
    zero = wave.drop_instant(drops, t0)
    meter = wave.meter_samples(stack.logs.get(METER, ""), wall_to_monotonic=wall_to_monotonic)
    members = list(range(0, n, TICKER_EVERY))
    spans = wave.sessions(att, drops)
    result = {
        "setting": dataclasses.asdict(setting), "connections": n, "connected": ok, "connect_s": round(span, 2),
        "trigger": trigger.value, "target": target,
        "entrance": {"before": f"{host}:{','.join(map(str, ports))}", "after": came_back or None},
        "steps_s": {**{k: round(v - t0, 3) for k, v in steps.items()}, "first drop": round(zero - t0, 3)},
        "wave_s": round(back - zero, 3),
        **wave.recovery(att, drops, zero), **wave.attempt_times(att, zero), "refused": wave.refusals(att, zero),
        "drop_codes": wave.drop_codes(drops, zero),
        "timeline": wave.timeline(att, zero, end=back - zero + TAIL_S),
        **wave.handshake_peaks(att, zero, replicas),
        "ticker": {**wave.ticker_loss(merged["sent"], receipts, answers, members, spans, since=zero, until=back),
                   **wave.ticker_delays(merged["sent"], receipts, since=zero, until=back)},
        "subscribe": wave.command_rate(meter, "subscribe", since=zero, until=back),
        "cores": wave.cores(sampler.samples, os.cpu_count() or 1), "other_containers": neighbours,
        # nginx's error log says why it gave up on a replica; HAProxy's log here is an access log
        "balancer_errors": nginx_reasons(stack.logs.get(front.name, "")) if front.name == "nginx" else None,
        # a replica that did not answer /healthz with 200 has no count of members: None, not 0
        "replicas_at_end": {name: {"members": h["members"] if h["status"] == 200 else None, "status": h["status"],
                                   **{k: h[k] if h["status"] == 200 else None for k in BROKER_COUNTERS}}
                            for name, h in healthz.items()},
        "series": wave.open_series(att, drops, replicas, zero, start=-2.0, end=round(back - zero + TAIL_S, 1)),
        "up_s": stack.timings.up_s, "down_s": stack.timings.down_s,
    }
    progress(f"{setting.name}: {result['back']}/{result['dropped']} back, 95% in "
             f"{_s(result['back_95_s'])}, 100% in {_s(result['back_100_s'])}; refused {sum(result['refused'].values())}; "
             f"ticker lost {result['ticker']['lost']}/{result['ticker']['owed']}")
    return result


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def parser(prog: str) -> BenchParser:
    p = BenchParser(prog, __doc__)
    p.add_argument("--connections", "-n", default=str(DEFAULT_N), help=f"N clients (default {DEFAULT_N})")
    p.add_argument("--settings", default=DEFAULT_SETTINGS,
                   help=f"backoffs, comma-separated: presets ({', '.join(PRESETS)}) or first:max:randomization "
                        f"(default {DEFAULT_SETTINGS})")
    p.add_argument("--runs", default="1", help="runs per setting, each on a fresh stack (default 1)")
    p.add_argument("--trigger", default=Trigger.KILL_REPLICA.value,
                   help=f"{' | '.join(t.value for t in Trigger)} (default kill-replica)")
    p.add_argument("--target", default="app-1", help="the replica kill-replica kills (default app-1)")
    p.add_argument("--down", default=None,
                   help="seconds between the SIGKILL and the start again, or `wave`: once every client is back "
                        "(default: wave for kill-replica, 0 for restart-balancer)")
    p.add_argument("--balancer", default="nginx", help="nginx (default) or haproxy (one process: N <= ~9,800 here; "
                   "--via bridge)")
    p.add_argument("--max-fails", default=None,
                   help="nginx's max_fails: failed tries after which it leaves a replica out for 10 s (default: the "
                        "lab's 0, never; nginx's own default is 1)")
    p.add_argument("--upstream-timeout", default=str(CONNECT_TIMEOUT_MS),
                   help="milliseconds the balancer tries a replica before the next one (nginx's "
                        f"proxy_connect_timeout; default {CONNECT_TIMEOUT_MS}, the connection bench's)")
    p.add_argument("--via", default=Via.BRIDGE.value, help="bridge (default) or published")
    p.add_argument("--open-timeout", default="20",
                   help="seconds one connection attempt may take (default 20, socket.io-client's `timeout`)")
    p.add_argument("--wave-timeout", default="180", help="seconds after the trigger to wait for everyone (default 180)")
    return p


def run_setting(bench: Started, layout: Layout, setting: Setting, *, runs: int, progress: Progress,
                **options: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        # closed connections' conntrack entries (an earlier run's) linger for a while
        wait_for_conntrack(CONNTRACK_PER_CONNECTION[layout.via] * layout.connections * 2, progress=progress)
        out.append(one_run(bench, layout, setting, **options))
        progress(f"{setting.describe()}: run {i + 1}/{runs} done")
    return out


def parse_down(text: str | None, trigger: Trigger) -> float | None:
    """--down: seconds, or `wave` (None: start the replica again once everyone is back)."""
    if text is None:
        return None if trigger is Trigger.KILL_REPLICA else 0.0
    if text == "wave":
        if trigger is Trigger.RESTART_BALANCER:
            raise PlanError("--down wave: nobody reconnects until the balancer is back; give seconds, e.g. --down 0")
        return None
    return parse_positive("down", text, 0, 60)


def everyone_back(runs: list[dict[str, Any]]) -> bool:
    """Every client connected, some dropped, and every dropped client came back, in every run."""
    return all(r["connected"] == r["connections"] and r["dropped"] > 0 and r["never_back"] == 0 for r in runs)


def run(args: argparse.Namespace) -> int:
    settings = parse_settings(args.settings)
    runs_n = parse_count(args.runs)
    if not 1 <= runs_n <= 20:
        raise PlanError(f"--runs {runs_n}: give 1..20")
    trigger, balancer = parse_trigger(args.trigger), parse_balancer(args.balancer)
    layout = layout_for(args.connections, args.via, str(REPLICAS), 1)
    if layout.replicas != REPLICAS:
        raise PlanError(f"N={layout.connections} needs {layout.replicas} replicas; this bench runs {REPLICAS}: "
                        "give a smaller N")
    upstream_timeout_ms = int(parse_positive("upstream-timeout", args.upstream_timeout, 100, 60_000))
    front = front_for(balancer, layout, upstream_timeout_ms=upstream_timeout_ms,
                      max_fails=parse_max_fails(args.max_fails))
    target = parse_target(args.target, REPLICAS) if trigger is Trigger.KILL_REPLICA else front.name
    options = {"front": front, "trigger": trigger, "target": target, "down_s": parse_down(args.down, trigger),
               "open_timeout": parse_positive("open-timeout", args.open_timeout, 1, 120),
               "wave_timeout": parse_positive("wave-timeout", args.wave_timeout, 5, 1200)}
    results: dict[str, list[dict[str, Any]]] = {}
    with started("storm") as bench:
        for setting in settings:
            results[setting.name] = run_setting(bench, layout, setting, runs=runs_n, progress=bench.progress,
                                                **options)
        machine = bench.machine()
        out = bench.folder()
    result = {"benchmark": "storm", "connections": layout.connections, "replicas": REPLICAS,
              "balancer": balancer.value, "trigger": trigger.value, "target": target, "down_s": options["down_s"],
              "runs": runs_n, "upstream_timeout_ms": upstream_timeout_ms,
              "max_fails": (parse_max_fails(args.max_fails) or 0) if balancer is Balancer.NGINX else None,
              "ticker": {"every": TICKER_EVERY, "rate": TICKER_RATE},
              "layout": {**dataclasses.asdict(layout), "via": layout.via.value, "listen_ports": list(layout.listen_ports)},
              "rows": [row(s, results[s.name]) for s in settings], "results": results, "machine": machine}
    text = write(result, out)
    print(text)
    print(f"-> {out}")
    return EXIT_PASS if all(everyone_back(rs) for rs in results.values()) else EXIT_FAIL
