"""What a replica costs: CPU microseconds per delivery, and per broker message it received, at fixed offered
rates well below any knee (`replicas`' primary figure).

Every variant (the Python replica with its options, the article's Node server) runs its own stack of the same
shape, all of them up at once, each with its own session of the Node load driver (the same users in one
room). Each run offers each rate to each variant in turn, the order rotated from run to run, so that two
variants compared are measured seconds apart on the same machine. A step's cost is the replicas' CPU (their
cgroups, summed) over its sending window divided by what they did in it: the deliveries the users counted,
and the broker messages the replicas received (every message published reaches every replica that has a
member in the room). A ratio of costs measured side by side holds on any machine; a knee depends on who else
is busy. Beside each step: the CPU of every container, of the generator, of the whole machine, and the load
average.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import scenario
from ..errors import LabError
from ..infra import inspect
from ..infra.launch import open_stack
from ..infra.usage import container_cpu_system
from ..load.step import LoadSpec, Session
from ..spec import describe, plan, stack_spec
from .climb import nginx_address
from .common import Started

#: the Python replica's options a variant may set (`--<key> <value>` on its command line), and their values
OPTIONS = {"reader": ("redis-py", "raw"), "json": ("stdlib", "orjson")}
#: implementation -> the scenario whose topology it runs
IMPLEMENTATIONS = {"python": "pubsub", "node": "seed-node-pubsub"}
BASELINE = "node"
#: the prefix of a replica's kernel CPU in a step's `cpu` (the part of its cgroup's CPU spent in the kernel)
KERNEL = "kernel:"


class VariantError(LabError):
    pass


@dataclass(frozen=True)
class Variant:
    """One server as measured: `python`, `node`, or `python/<option>=<value>/...` (the replica's options)."""

    label: str
    implementation: str
    args: tuple[str, ...] = ()


def parse_variant(text: str) -> Variant:
    """`python`, `node`, or `python/reader=raw/json=orjson`; VariantError names what is wrong."""
    name, *options = text.strip().split("/")
    if name not in IMPLEMENTATIONS:
        raise VariantError(f"bad variant {text!r}: start with one of {', '.join(IMPLEMENTATIONS)}")
    args: list[str] = []
    for option in options:
        key, _, value = option.partition("=")
        if name != "python" or key not in OPTIONS or value not in OPTIONS[key]:
            choices = "; ".join(f"{k}={'|'.join(v)}" for k, v in OPTIONS.items())
            raise VariantError(f"bad option {option!r} in variant {text!r}: the python replica takes {choices}")
        args += [f"--{key}", value]
    return Variant(text.strip(), name, tuple(args))


def parse_variants(text: str) -> list[Variant]:
    variants = [parse_variant(v) for v in text.split(",") if v.strip()]
    labels = [v.label for v in variants]
    if not variants or len(set(labels)) != len(labels):
        raise VariantError(f"bad variants {text!r}: give distinct ones, e.g. python,node")
    return variants


def order(variants: list[Variant], run: int) -> list[Variant]:
    """The variants in run `run`'s order: rotated by one each run, so that none is always measured first."""
    k = run % len(variants)
    return variants[k:] + variants[:k]


def cost(step: dict[str, Any], replicas_in_room: int) -> dict[str, Any]:
    """One step's cost: replicas' cores, µs per delivery and per broker message (None when nothing was done)."""
    cpu = step.get("cpu") or {}
    cores = sum(v for k, v in cpu.items() if k.startswith("app-"))
    kernel = sum(v for k, v in cpu.items() if k.startswith(KERNEL + "app-"))
    delivered = step["delivered_per_s"]
    broker = step["sent_per_s"] * replicas_in_room
    lab = sum(v for k, v in cpu.items() if not k.startswith(KERNEL))
    return {"replica_cores": cores, "us_per_delivery": cores / delivered * 1e6 if delivered else None,
            "kernel_share": kernel / cores if cores and any(k.startswith(KERNEL) for k in cpu) else None,
            "broker_messages_per_s": broker, "us_per_broker_message": cores / broker * 1e6 if broker else None,
            "other_cores": None if step.get("host_cpu") is None else step["host_cpu"] - lab}


def summarize(steps: list[dict[str, Any]], variants: list[str], rates: list[float]) -> dict[str, Any]:
    """Per variant and rate the medians of the runs (and how many runs stand behind each); per variant its
    ratio to the baseline (Node): the median over every (run, rate) pair measured side by side."""
    by: dict[tuple[str, float, int], dict[str, Any]] = {(s["variant"], s["offered"], s["run"]): s for s in steps}
    runs = sorted({s["run"] for s in steps})
    table: dict[str, dict[str, Any]] = {}
    for v in variants:
        per_rate = {}
        for rate in rates:
            got = [by[(v, rate, r)] for r in runs if (v, rate, r) in by]
            per_rate[f"{rate:g}"] = {
                "us_per_delivery": _median([s["us_per_delivery"] for s in got]),
                "us_per_broker_message": _median([s["us_per_broker_message"] for s in got]),
                "delivered_per_s": _median([s["delivered_per_s"] for s in got]),
                "replica_cores": _median([s["replica_cores"] for s in got]),
                "kernel_share": _median([s.get("kernel_share") for s in got]),
                "lost": sum(s["lost"] for s in got), "runs": len(got)}
        pairs = [by[(v, rate, r)]["us_per_delivery"] / by[(BASELINE, rate, r)]["us_per_delivery"]
                 for rate in rates for r in runs
                 if (v, rate, r) in by and (BASELINE, rate, r) in by
                 and by[(v, rate, r)]["us_per_delivery"] and by[(BASELINE, rate, r)]["us_per_delivery"]]
        table[v] = {"rates": per_rate, "us_per_delivery": _median([p["us_per_delivery"] for p in per_rate.values()]),
                    "marginal_us_per_delivery": slope([(p["delivered_per_s"], p["replica_cores"])
                                                       for p in per_rate.values()]),
                    "ratio_to_node": _median(pairs), "pairs": len(pairs)}
    return table


def slope(points: list[tuple[float | None, float | None]]) -> float | None:
    """The marginal cost: the least-squares slope of replica cores over deliveries/s, in µs per delivery
    (what a replica spends whatever the rate, its timers and heartbeats, falls out as the intercept)."""
    known = [(x, y) for x, y in points if x is not None and y is not None]
    if len(known) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in known), statistics.fmean(y for _, y in known)
    sxx = sum((x - mx) ** 2 for x, _ in known)
    return sum((x - mx) * (y - my) for x, y in known) / sxx * 1e6 if sxx else None


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def replicas_in_room(folder: Path) -> int:
    """How many replicas serve the session's users (joined/<user> holds the replica that welcomed it)."""
    return len({p.read_text().strip() for p in (folder / "joined").iterdir()})


def measure(bench: Started, variants: list[Variant], *, rates: list[float], runs: int, seconds: float,
            users: int, out: Path) -> Iterator[dict[str, Any]]:
    """Every variant's stack up at once, one load session each; then per run, per rate, one step per variant
    in the run's order. Yields each step as it is measured."""
    progress = bench.progress
    with ExitStack() as stacks:
        sessions: dict[str, tuple[Session, int]] = {}
        for v in variants:
            base = scenario.load(IMPLEMENTATIONS[v.implementation])
            sc = dataclasses.replace(base, name=f"cost-{v.implementation}",
                                     workload=dataclasses.replace(base.workload, clients=users))
            p = plan(sc)
            spec, note = stack_spec(bench.client, p, bench.images)
            spec = dataclasses.replace(spec, app_args=spec.app_args + v.args)
            progress(f"{v.label}: {describe(p, spec, note)}")
            stack = stacks.enter_context(open_stack(bench.client, spec, progress=progress))
            host, port = nginx_address(stack, "bridge")
            folder = out / "steps" / f"cost-{_slug(v.label)}"
            load = stacks.enter_context(Session(port, LoadSpec(users=users, driver="node", host=host), folder,
                                                broker=True, cpu_probe=_probe(stack)))
            sessions[v.label] = (load, replicas_in_room(folder))
        for run in range(runs):
            for rate in rates:
                for v in order(variants, run):
                    load, in_room = sessions[v.label]
                    d = {"variant": v.label, "run": run + 1, **load.step(rate, seconds).to_dict(),
                         "load_average": os.getloadavg()}
                    d.update(cost(d, in_room))
                    progress(f"cost run {run + 1}/{runs} {v.label}: offered {rate:g}/s, delivered "
                             f"{d['delivered_per_s']:.0f}/s, lost {d['lost']}, replicas {d['replica_cores']:.2f} "
                             f"cores = {_us(d['us_per_delivery'])} µs/delivery ({_pct(d['kernel_share'])} kernel); "
                             f"machine {d['host_cpu']:.2f} "
                             f"busy, load {d['load_average'][0]:.2f}")
                    yield d


def _probe(stack: Any) -> Any:
    """Every container's CPU seconds, and each replica's kernel part as `kernel:app-N`."""
    def read() -> dict[str, float]:
        out = inspect.cpu_seconds(stack)
        for name, c in stack.containers.items():
            if name.startswith("app-") and (kernel := container_cpu_system(c.id)) is not None:
                out[KERNEL + name] = kernel
        return out
    return read


def _slug(label: str) -> str:
    return label.replace("/", "-").replace("=", "-")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(summary: dict[str, Any], rates: list[float]) -> str:
    """The cost table: per variant its µs per delivery at each rate (median, runs), per broker message, and
    its ratio to the Node server measured side by side."""
    head = " / ".join(f"{r:g}" for r in rates)
    rows = [f"| variant | ratio to node (pairs) | µs/delivery at {head} msg/s (runs) | marginal µs/delivery | "
            f"µs/broker message at {head} msg/s | in the kernel at {rates[-1]:g} msg/s |", "|" + "---|" * 6]
    for v, s in summary.items():
        per = s["rates"]
        deliveries = " / ".join(f"{_us(per[f'{r:g}']['us_per_delivery'])} (n={per[f'{r:g}']['runs']})" for r in rates)
        broker = " / ".join(_us(per[f"{r:g}"]["us_per_broker_message"]) for r in rates)
        ratio = "-" if s["ratio_to_node"] is None else f"{s['ratio_to_node']:.2f}x ({s['pairs']})"
        share = per[f"{rates[-1]:g}"]["kernel_share"]
        rows.append(f"| {v} | {ratio} | {deliveries} | {_us(s['marginal_us_per_delivery'])} | {broker} | "
                    + ("-" if share is None else f"{share:.0%}") + " |")
    return "\n".join(rows)
