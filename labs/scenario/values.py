"""How one value of a scenario is read: a table, an integer or a number in a range, a choice of an enum, a
string of a pattern; each refusal one line naming where, the key and the value. Used by `parse` and
`fault_table`."""

from __future__ import annotations

import enum
import re
from typing import Any

from ..errors import ScenarioError
from .expect import show


def subtable(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: [{key}] must be a table, got {show(value)}")
    return value


def refuse_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key {show(extra[0])} (allowed: {', '.join(sorted(allowed))})")


def int_of(table: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}: {key} must be an integer, got {show(value)}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} must be between {lo} and {hi}, got {show(value)}")
    return value


def float_of(table: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {key} must be a number, got {show(value)}")
    if not lo <= value <= hi:  # also refuses nan
        raise ScenarioError(f"{where}: {key} must be between {lo:g} and {hi:g}, got {show(value)}")
    return float(value) + 0.0  # -0.0 reads as 0.0


def enum_of(table: dict[str, Any], key: str, default: enum.Enum, where: str) -> Any:
    value = table.get(key, default.value)
    kind = type(default)
    try:
        return kind(value)
    except (ValueError, TypeError):
        names = ", ".join(m.value for m in kind)
        raise ScenarioError(f"{where}: unknown {key} {show(value)} (one of: {names})") from None


def str_of(table: dict[str, Any], key: str, default: str, pattern: re.Pattern[str], where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ScenarioError(f"{where}: {key} must match {pattern.pattern}, got {show(value)}")
    return value


def seconds(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")
