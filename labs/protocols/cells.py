"""Table cells every protocol formats the same way."""

from __future__ import annotations

import math

from ..accounting.checker import Accounting


def pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "0/0 (n/a)"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def latency(a: Accounting) -> str:
    return f"{ms(a.percentile_ms(0.5))} / {ms(a.percentile_ms(0.99))}"


def ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return "∞" if value == math.inf else f"{value:.2f}"
