"""The results table: one renderer for every protocol; each adapter supplies its own columns between the
scenario and the verdict."""

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
    """The runs of one protocol in one table per set of columns (WebSocket runs with faults have their own);
    a command that mixes protocols (make scenario-seed-node) in one table with every protocol's columns,
    blank where a row has none. Under each table, the reasons of verdicts and each adapter's notes."""
    groups: dict[tuple[str, ...], list[RunResult]] = {}
    mixed = len({type(r.protocol) for r in results}) > 1
    for r in results:
        key = () if mixed else tuple(r.protocol.columns(r.outcome))
        groups.setdefault(key, []).append(r)
    return "\n\n".join(_one_table(members) for members in groups.values())


def _one_table(results: list[RunResult]) -> str:
    columns: dict[str, None] = {}
    cells = []
    for r in results:
        own = r.protocol.columns(r.outcome)
        if r.accounting is None:  # the checker crashed: no figure stands
            own = dict.fromkeys(own, "-")
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
