"""How fast the connection bench opens its connections: the ramp. Pure: the load processes
(`labs.bench.connections.client`) follow it, the bench reports what it did.

Opened as fast as the gate allows, N connections arrive in a burst that the two cores here cannot absorb:
handshakes queue behind each other, nginx's connects to the replicas time out (502), and the connections
already held miss their keepalive pongs (close 1011). So the ramp is paced, in connections per second over
all load processes:

  --rate 300    a fixed rate (each of L load processes opens 300/L a second)
  --rate auto   start low and step up: every `window_s` seconds each load process looks at its last window
                and goes up one step when every connection it tried opened, none it held closed and the
                median handshake took under `slow_s`; one step down when the handshakes were slow; half
                the rate when one failed or closed. The report gives the rate every window ran at: the
                highest rate that lost nothing is the one just under the first step down.
  --rate off    no pacing: only the gate (connections in flight per load process), as before

A paced ramp gives up (its load process opens no more) after GIVE_UP_WINDOWS windows in a row lost
connections, or once `--ramp-limit` seconds have passed: the run goes on with the connections held, and
says how many that was.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ...errors import LabError

#: where `--rate auto` starts and how it steps, in connections per second over all load processes
AUTO_START = 100.0
AUTO_STEP = 25.0
#: the most `--rate` asks for, over all load processes
MAX_RATE = 20_000.0
#: the least any load process is paced to (a window must see a connection or two)
MIN_PROCESS_RATE = 1.0
#: seconds between two looks at the ramp, and the median handshake time above which it is too fast
WINDOW_S = 10.0
SLOW_S = 1.0
#: a paced ramp stops opening after this many windows in a row lost connections (failed or closed): the
#: host cannot hold more, and trying on only loses the ones held
GIVE_UP_WINDOWS = 3


class RampError(LabError):
    """A --rate word that is not a rate."""


@dataclass(frozen=True)
class Ramp:
    """Connections per second (`rate`, None: unpaced) and, when `step` > 0, how the rate moves between
    windows."""

    rate: float | None
    step: float = 0.0
    window_s: float = WINDOW_S
    slow_s: float = SLOW_S
    #: seconds after which a load process opens no more (None: until its share is tried)
    limit_s: float | None = None

    @property
    def stepped(self) -> bool:
        return self.rate is not None and self.step > 0

    def describe(self) -> str:
        if self.rate is None:
            return "unpaced (only the gate)"
        limit = "" if self.limit_s is None else f", for at most {self.limit_s:g} s"
        if not self.stepped:
            return f"paced at {self.rate:,.0f} connections/s{limit}"
        return (f"from {self.rate:,.0f}/s, +{self.step:,.0f}/s every {self.window_s:g} s while nothing fails and "
                f"the median handshake stays under {self.slow_s:g} s{limit}")

    def per_process(self, processes: int) -> Ramp:
        """One load process's share of the ramp (the rate and the step divided by `processes`)."""
        if self.rate is None:
            return self
        return replace(self, rate=max(MIN_PROCESS_RATE, self.rate / processes), step=self.step / processes)

    def next_rate(self, rate: float, *, tried: int, failed: int, closed: int, median_s: float | None) -> float:
        """The rate for the next window from the last one's outcome: half when a connection failed or a held
        one closed, one step down when the median handshake was slow, one step up when the window opened
        something and all went well, else the same."""
        if not self.stepped:
            return rate
        if failed or closed:
            return max(MIN_PROCESS_RATE, rate / 2)
        if median_s is not None and median_s > self.slow_s:
            return max(MIN_PROCESS_RATE, rate - self.step)
        return min(MAX_RATE, rate + self.step) if tried else rate


def gives_up(rows: Sequence[dict[str, Any]], windows: int = GIVE_UP_WINDOWS) -> bool:
    """Whether the last `windows` windows each lost connections (a failure or a close)."""
    last = rows[-windows:]
    return len(last) == windows and all(r["failed"] or r["closed"] for r in last)


def stop_reason(ramp: Ramp, rows: Sequence[dict[str, Any]], elapsed_s: float) -> str | None:
    """Why a paced ramp opens no more now: it kept losing connections, or its time is up; None: go on."""
    if ramp.rate is None:
        return None
    if gives_up(rows):
        return f"{GIVE_UP_WINDOWS} windows in a row lost connections"
    if ramp.limit_s is not None and elapsed_s >= ramp.limit_s:
        return f"the ramp's {ramp.limit_s:g} s were up"
    return None


def parse_ramp(text: str) -> Ramp:
    """`--rate`: a number of connections per second, `auto` or `off`; else RampError, one line."""
    word = text.strip().lower()
    if word == "off":
        return Ramp(rate=None)
    if word == "auto":
        return Ramp(rate=AUTO_START, step=AUTO_STEP)
    try:
        rate = float(word.replace("_", ""))
    except ValueError:
        rate = math.nan
    if not 1 <= rate <= MAX_RATE:
        raise RampError(f"--rate {text!r}: give connections per second (1..{MAX_RATE:.0f}), auto (start at "
                        f"{AUTO_START:.0f}/s and step up) or off (unpaced)")
    return Ramp(rate=rate)


def next_start(due: float, now: float, rate: float | None) -> float:
    """When the connection after one due at `due` (and started at `now`) is due: one interval later, counted
    from now when the opener fell behind, so that a stall is not made up in a burst."""
    return now if rate is None else max(due, now) + 1 / rate


def combine(windows: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The load processes' windows added up, window k of each into row k: the rate they ran at together,
    what they opened, what failed or closed, and the slowest median handshake."""
    out = []
    for k in range(max((len(w) for w in windows), default=0)):
        rows = [w[k] for w in windows if k < len(w)]
        medians = [r["median_s"] for r in rows if r["median_s"] is not None]
        out.append({"t_s": max(r["t_s"] for r in rows), "rate": round(sum(r["rate"] for r in rows), 1),
                    "opened": sum(r["opened"] for r in rows), "failed": sum(r["failed"] for r in rows),
                    "closed": sum(r["closed"] for r in rows),
                    "median_s": round(max(medians), 3) if medians else None})
    return out


def clean_rate(rows: Sequence[dict[str, Any]]) -> float | None:
    """The highest rate a window ran at without a failure or a close, among windows that opened
    connections; None when none did."""
    good = [r["rate"] for r in rows if r["opened"] and not r["failed"] and not r["closed"]]
    return max(good) if good else None


def achieved(rows: Sequence[dict[str, Any]]) -> float | None:
    """Connections opened per second over the windows (None without any)."""
    span = max((r["t_s"] for r in rows), default=0.0)
    return sum(r["opened"] for r in rows) / span if span > 0 else None


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
