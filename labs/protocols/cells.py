"""Table cells every protocol formats the same way; a figure that was not measured is "-", never 0."""

from __future__ import annotations

import math

from ..accounting.checker import Accounting


def pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "0/0 (n/a)"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def latency(a: Accounting) -> str:
    """`p50 / p99` in ms; "-" when no message arrived."""
    p50, p99 = a.percentile_ms(0.5), a.percentile_ms(0.99)
    return "-" if p50 is None and p99 is None else f"{ms(p50)} / {ms(p99)}"


def ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return "∞" if value == math.inf else f"{value:.2f}"
