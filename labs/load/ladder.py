"""The capacity ladder's rules. Pure: a step is the dict `StepResult.to_dict()` gives.

A ladder steps the offered rate up until a step breaks (p99 over `BREAK_P99_MS`, or anything lost or
dropped): through the given rates, then on past the last one by `GROWTH` a rung, up to a ceiling (`rungs`).
The knee is the step with the most deliveries/s whose p99 is within `KNEE_P99_MS` and that lost nothing, on
a ladder that broke above it; a ladder that reached its ceiling unbroken has no knee, only the rate it held
up to (`unbroken_up_to`). Several runs of a ladder combine into medians, step by step; a rate counts toward the knee only
if every run reached it without breaking (a run that broke below a rate is broken at that rate).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import LabError
from ..scenario import Broker

BREAK_P99_MS = 100.0
KNEE_P99_MS = 50.0
PATTERNS = {"none": Broker.NONE, "pubsub": Broker.REDIS_PUBSUB, "streams": Broker.REDIS_STREAMS}
DEFAULT_RATES = (100, 200, 400, 700, 1000, 1400, 2000, 2800, 4000, 5600)
#: past the given rates, each rung offers this much more than the one before
GROWTH = 1.4
#: the highest rate a ladder climbs to (the most a load step offers); unbroken there, it says so
CEILING = 100_000.0
Step = dict[str, Any]


class LadderError(LabError):
    pass


def patterns(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATTERNS]
    if not names or unknown:
        raise LadderError(f"unknown pattern {', '.join(unknown) or repr(text)}; choose from {', '.join(PATTERNS)}")
    return names


def numbers(text: str, what: str, lo: float, hi: float) -> list[float]:
    try:
        values = [float(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise LadderError(f"bad {what} {text!r}: give comma-separated numbers, e.g. 100,200,400") from None
    if not values or any(not lo <= v <= hi for v in values) or values != sorted(set(values)):
        raise LadderError(f"bad {what} {text!r}: increasing numbers in {lo:g}..{hi:g}")
    return values


def rungs(rates: Sequence[float], ceiling: float = CEILING, growth: float = GROWTH) -> Iterator[float]:
    """The rates a ladder offers, lowest first: the given ones, then on from the last by `growth` a rung
    (rounded to two significant digits), the ceiling the last. The caller stops at the first broken step."""
    if not rates or rates[-1] > ceiling or growth <= 1:
        raise LadderError(f"a ladder climbs from rates at or under its ceiling {ceiling:g}, by more than 1x a rung")
    yield from rates
    rate = rates[-1]
    while rate < ceiling:
        rate = min(ceiling, max(rate + 1, _two_digits(rate * growth)))
        yield rate


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def every_run_held(step: Step) -> bool:
    """Every run behind a merged step reached its rate without breaking (one run's own step: True)."""
    return bool(step.get("held", 1) == step.get("of", 1))


def broken(step: Step) -> bool:
    """The step where the ladder stops: p99 over the limit, nothing delivered, anything lost or dropped, or
    (merged steps) a run that broke at or below this rate."""
    p99 = step.get("p99_ms")
    return (p99 is None or p99 > BREAK_P99_MS or step["lost"] > 0 or step["dropped"] > 0
            or not every_run_held(step))


def within_knee(step: Step) -> bool:
    p99 = step.get("p99_ms")
    return (p99 is not None and p99 <= KNEE_P99_MS and step["lost"] == 0 and step["dropped"] == 0
            and every_run_held(step))


def why_broken(step: Step) -> str:
    """`<offered>: <why>` for a broken step: the loss, the drops, the p99, and how many runs had broken by then."""
    p99 = step.get("p99_ms")
    parts = [f"lost {step['lost']}"] if step["lost"] else []
    if step["dropped"]:
        parts.append(f"dropped {step['dropped']}")
    if p99 is None:
        parts.append("nothing delivered")
    elif p99 > BREAK_P99_MS:
        parts.append(f"p99 {p99:.1f} ms")
    if not every_run_held(step):
        parts.append(f"{step['of'] - step['held']} of {step['of']} runs broken")
    return f"{step['offered']:g}: " + ", ".join(parts)


def unbroken_up_to(steps: list[Step]) -> float | None:
    """The highest rate offered when no step broke, in any run: the ladder reached its ceiling and the
    pattern's knee lies above it, unmeasured. None when a step broke (or there are no steps)."""
    if not steps or any(broken(s) for s in steps):
        return None
    return float(max(s["offered"] for s in steps))


def knee(steps: list[Step]) -> Step | None:
    """The most deliveries/s with p99 <= 50 ms and nothing lost, on a ladder that broke above it; None
    when no step qualifies, or when nothing broke (the ceiling is no knee: see `unbroken_up_to`)."""
    if unbroken_up_to(steps) is not None:
        return None
    good = [s for s in steps if within_knee(s)]
    return max(good, key=lambda s: s["delivered_per_s"]) if good else None


def median_steps(runs: list[list[Step]]) -> list[Step]:
    """Per offered rate, the median of each figure over the runs that reached that rate. `lost` and
    `dropped` are the most any run saw (one run's loss is a loss). Behind each merged step: `runs` reached
    the rate, `held` of them did not break there, of `of` runs in all; a run that broke below the rate
    counts as broken at it, so the step is `broken` and never `within_knee` unless `held == of`."""
    by_rate: dict[float, list[Step]] = {}
    for run in runs:
        for step in run:
            by_rate.setdefault(step["offered"], []).append(step)
    out = []
    for rate in sorted(by_rate):
        group = by_rate[rate]
        merged: Step = dict(group[0])
        for key in ("sent_per_s", "delivered_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "generator_peak",
                    "host_cpu"):
            values = [s[key] for s in group if s.get(key) is not None]
            merged[key] = statistics.median(values) if values else None
        for key in ("lost", "dropped", "duplicated", "unexpected"):
            merged[key] = max(s[key] for s in group)
        merged["generator_bound"] = any(s["generator_bound"] for s in group)
        merged["cpu"] = {name: statistics.median(s["cpu"].get(name, 0.0) for s in group) for name in group[0]["cpu"]}
        merged["runs"] = len(group)
        merged["held"] = sum(1 for s in group if not broken(s))
        merged["of"] = len(runs)
        out.append(merged)
    return out


def bottleneck(step: Step) -> str:
    """Who was busiest: the process (container, docker-proxy, or the generator) using the most CPU, and how
    busy the whole machine was (processes, the kernel's networking and everything else)."""
    cpu = step.get("cpu") or {}
    if not cpu:
        return "?"
    name = max(cpu, key=lambda n: cpu[n])
    text = f"{name} {cpu[name]:.2f} cores (lab processes: {sum(cpu.values()):.2f}"
    if step.get("host_cpu") is not None:
        text += f"; machine: {step['host_cpu']:.2f} of {step.get('machine_cores') or '?'} busy"
    return text + ")"


def headroom(first: Step, second: Step) -> str:
    """What one more generator process did to the knee step: within run-to-run noise (deliveries within 3 %,
    p99 within 50 % or 5 ms) it had headroom; faster, the generator was a bottleneck; slower, the machine's
    cores were, and the extra process took CPU from the lab."""
    a, b = first.get("p99_ms"), second.get("p99_ms")
    if a is None or b is None:
        return "no figure to compare"
    same_rate = abs(first["delivered_per_s"] - second["delivered_per_s"]) <= 0.03 * first["delivered_per_s"]
    if same_rate and abs(a - b) <= max(5.0, 0.5 * a):
        return "unchanged: the generator had headroom"
    if b < a:
        return "faster: the generator was a bottleneck"
    return "slower: the cores were the limit, and the extra process took CPU from the lab"
