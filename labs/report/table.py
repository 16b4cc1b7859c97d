"""The results table: one renderer for every protocol. Runs of one protocol (and, for WebSocket, with or
without faults) share a table; each adapter supplies its own columns between the scenario and verdict."""

from __future__ import annotations

from .result import RunResult


def render(rows: list[dict[str, str]]) -> str:
    """A Markdown table, aligned for the terminal; every row has the first row's columns."""
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[h]) for h, c in zip(heads, cells)) + " |"

    out = [line(heads), "|" + "|".join("-" * (widths[h] + 2) for h in heads) + "|"]
    out += [line([r[h] for h in heads]) for r in rows]
    return "\n".join(out)


def _group(result: RunResult) -> tuple[str, tuple[str, ...]]:
    """Runs whose rows have the same columns."""
    return result.scenario.topology.app.value, tuple(result.protocol.columns(result.outcome))


def table(results: list[RunResult]) -> str:
    """One table per kind of run, each followed by the reasons of verdicts and the adapter's notes."""
    groups: dict[tuple[str, tuple[str, ...]], list[RunResult]] = {}
    for r in results:
        groups.setdefault(_group(r), []).append(r)
    parts = []
    for members in groups.values():
        rows = [{"scenario": r.scenario.name, **r.protocol.columns(r.outcome), "verdict": r.verdict_text} for r in members]
        out = [render(rows)]
        out += [f"{r.scenario.name}: {r.verdict.reason}" for r in members if r.verdict.reason]
        out += members[0].protocol.notes([r.outcome for r in members])
        parts.append("\n".join(out))
    return "\n\n".join(parts)
