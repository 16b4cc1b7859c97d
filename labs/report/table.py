"""The results table: one renderer for every protocol, one table for every run of a command."""

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


def table(results: list[RunResult]) -> str:
    """One table for every run, whatever its protocol: each adapter supplies its own columns between the
    scenario and the verdict, and a column a run does not have is left blank in its row. Under it, the
    reasons of verdicts and each adapter's notes on its own runs."""
    columns: dict[str, None] = {}
    cells = []
    for r in results:
        own = r.protocol.columns(r.outcome)
        columns.update(dict.fromkeys(own))
        cells.append(own)
    rows = [{"scenario": r.scenario.name, **{c: own.get(c, "") for c in columns}, "verdict": r.verdict_text}
            for r, own in zip(results, cells)]
    out = [render(rows)]
    out += [f"{r.scenario.name}: {r.verdict.reason}" for r in results if r.verdict.reason]
    by_protocol: dict[type, list[RunResult]] = {}
    for r in results:
        by_protocol.setdefault(type(r.protocol), []).append(r)
    for members in by_protocol.values():
        out += members[0].protocol.notes([r.outcome for r in members])
    return "\n".join(out)
