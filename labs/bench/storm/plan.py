"""What a storm run compares, from the command line: the backoff settings, what triggers the wave, the
balancer, and the sizes. Pure; a word that is not one is a PlanError (one line, exit 2, nothing started)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ...scenario import Balancer
from ..connections.plan import PlanError, parse_choice

#: named backoff settings: (first delay s, maximum s, randomization)
PRESETS: dict[str, tuple[float, float, float]] = {
    "no-jitter": (1.0, 5.0, 0.0),   # socket.io's delays without its jitter: every client at the same instants
    "socketio": (1.0, 5.0, 0.5),    # socket.io-client's and python-socketio's defaults
    "wide": (1.0, 30.0, 1.0),       # the first retry anywhere in 0-2 s, later ones up to 30 s apart
    "lab": (0.05, 0.5, 0.0),        # the lab's own scenario clients (workload defaults)
}
DEFAULT_SETTINGS = "no-jitter,socketio,wide"
MAX_SETTINGS = 8


class Trigger(enum.Enum):
    """What drops the connections at once: a replica SIGKILLed and started again (its clients reconnect to
    whichever replica the balancer picks), or the balancer itself SIGKILLed and started again (everyone)."""

    KILL_REPLICA = "kill-replica"
    RESTART_BALANCER = "restart-balancer"


@dataclass(frozen=True)
class Setting:
    """One backoff under test: socket.io-client's formula (labs.scenario.backoff) with these three values."""

    name: str
    initial: float
    maximum: float
    randomization: float

    def __post_init__(self) -> None:
        if not (0.001 <= self.initial <= 60 and self.initial <= self.maximum <= 300
                and 0 <= self.randomization <= 1):
            raise PlanError(f"setting {self.name!r}: need 0.001 <= first delay <= 60 s, first delay <= maximum "
                            f"<= 300 s and 0 <= randomization <= 1, got {self.initial:g}:{self.maximum:g}:"
                            f"{self.randomization:g}")

    @property
    def backoff(self) -> tuple[float, float, float]:
        return self.initial, self.maximum, self.randomization

    def describe(self) -> str:
        jitter = "no jitter" if self.randomization == 0 else f"±{self.randomization:.0%}"
        return f"{self.name} ({self.initial:g} s → {self.maximum:g} s, {jitter})"


def parse_settings(text: str) -> list[Setting]:
    """`name,…` (a preset) or `first:max:randomization` (seconds, seconds, 0..1), comma-separated."""
    out: list[Setting] = []
    for item in (part.strip() for part in text.split(",")):
        if item in PRESETS:
            out.append(Setting(item, *PRESETS[item]))
            continue
        parts = item.split(":")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise PlanError(f"--settings {item!r}: give a preset ({', '.join(PRESETS)}) or first:max:randomization, "
                            "e.g. 1:5:0.5")
        out.append(Setting(item, *values))
    if len({s.backoff for s in out}) != len(out):
        raise PlanError(f"--settings {text!r} names one backoff twice")
    if len(out) > MAX_SETTINGS:
        raise PlanError(f"--settings {text!r}: at most {MAX_SETTINGS} settings per run")
    return out


def parse_trigger(text: str) -> Trigger:
    return parse_choice(Trigger, "--trigger", text)


def parse_balancer(text: str) -> Balancer:
    return parse_choice(Balancer, "--balancer", text)


def parse_max_fails(text: str | None) -> int | None:
    """nginx's max_fails: None (the lab's 0: never leave a replica out), or 0..1000."""
    if text is None:
        return None
    value = parse_positive("max-fails", text, 0, 1000)
    if value != int(value):
        raise PlanError(f"--max-fails {text!r}: give a whole number from 0 to 1000")
    return int(value)


def parse_target(text: str, replicas: int) -> str:
    """The replica a kill-replica trigger kills: app-1..app-N."""
    names = [f"app-{i}" for i in range(1, replicas + 1)]
    if text not in names:
        raise PlanError(f"--target {text!r}: give one of app-1..app-{replicas}")
    return text


def parse_positive(name: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:
        raise PlanError(f"--{name} {text!r}: give a number from {lo:g} to {hi:g}")
    return value
