"""The results tables: a summary of every run (summary.py), then one detail table per kind of run. A kind
is the set of columns one contributor adds: a protocol adapter (WebSocket, WebSocket under faults, Redis
Cluster, Socket.IO, the seed article's servers) or the Swarm engine. A detail table holds the runs of its
kind and the columns with a value in at least one of them."""

from __future__ import annotations

from .result import RunResult
from .summary import summary_row
from .swarm_cells import on_swarm, swarm_columns

SWARM = "Swarm"
#: a cell with no value: not measured ("-") or not this row's column ("")
EMPTY = frozenset({"", "-"})


def render(rows: list[dict[str, str]]) -> str:
    """A Markdown table, aligned for the terminal; every row has the first row's columns."""
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[h]) for h, c in zip(heads, cells, strict=True)) + " |"

    out = [line(heads), "|" + "|".join("-" * (widths[h] + 2) for h in heads) + "|"]
    out += [line([r[h] for h in heads]) for r in rows]
    return "\n".join(out)


def table(results: list[RunResult]) -> str:
    """The summary with the reasons of verdicts under it (a balancer column when runs used more than one),
    then each kind's detail table, titled, with its adapter's notes under it (the kinds in the order their
    first run came; Swarm last)."""
    mixed = len({r.scenario.topology.balancer for r in results}) > 1
    summary = [render([summary_row(r, balancer=mixed) for r in results])]
    summary += [f"{r.scenario.name}: {r.verdict.reason}" for r in results if r.verdict.reason]
    parts = ["\n".join(summary)]
    for title, members in kinds(results).items():
        parts.append(f"{title}\n\n{detail(members)}")
        if title != SWARM:
            parts[-1] += "".join(f"\n{line}" for line in notes([r for r, _ in members]))
    return "\n\n".join(parts)


def kinds(results: list[RunResult]) -> dict[str, list[tuple[RunResult, dict[str, str]]]]:
    """Each kind's runs with their cells: the adapter's kind for every run, and Swarm for a run on one."""
    groups: dict[str, list[tuple[RunResult, dict[str, str]]]] = {}
    for r in results:
        own = r.protocol.columns(r.outcome)
        if r.accounting is None:  # the checker crashed: no figure stands
            own = dict.fromkeys(own, "-")
        groups.setdefault(r.protocol.kind(r.outcome), []).append((r, own))
    for r in results:
        if on_swarm(r):
            groups.setdefault(SWARM, []).append((r, swarm_columns(r)))
    return groups


def detail(members: list[tuple[RunResult, dict[str, str]]]) -> str:
    """One kind's table: its runs, and every column that has a value in one of them."""
    columns: dict[str, None] = {}
    for _, own in members:
        columns.update(dict.fromkeys(own))
    kept = [c for c in columns if any(own.get(c, "") not in EMPTY for _, own in members)]
    return render([{"scenario": r.scenario.name, **{c: own.get(c, "") for c in kept}} for r, own in members])


def notes(results: list[RunResult]) -> list[str]:
    """Each adapter's lines about its runs of one kind."""
    by_protocol: dict[type, list[RunResult]] = {}
    for r in results:
        by_protocol.setdefault(type(r.protocol), []).append(r)
    return [line for members in by_protocol.values()
            for line in members[0].protocol.notes([r.outcome for r in members])]
