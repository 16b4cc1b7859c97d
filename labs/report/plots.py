"""PNG pictures: per run, deliveries per second with each fault shaded and clients per replica; for the
capacity bench, latency against throughput and CPU per container.

Figures are drawn on matplotlib's Agg canvas, chosen here per figure (`Figure` + `FigureCanvasAgg`, the
way matplotlib recommends for programs that only write files): no pyplot, so no global backend switch,
no figure registry to leak from, nothing to close. matplotlib is imported inside the functions that draw,
so importing the lab (and `python -m labs --help`) never pays for it. The numbers come from `series`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..accounting.history import History
from . import series
from .result import PLACEMENT_PNG, TIMELINE_PNG, RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
LATENCY, CPU = "latency-vs-throughput.png", "cpu.png"
KNEE_MS = 50.0
GREEN, BLUE, FAULT, WINDOW = "#3a8f4f", "#4a78b5", "#e0a030", "#f3d9a4"
#: what a capacity step must carry (see `capacity_series`)
STEP_KEYS = ("pattern", "replicas", "offered", "delivered_per_s", "p50_ms", "p99_ms", "cpu")


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def timeline_png(h: History, windows: Sequence[tuple[float, float]], path: Path, *, title: str = "") -> Path:
    """Messages sent and deliveries per second since the first send, each fault shaded (applied..healed
    dark, the accounting's window around it light). Nothing sent: empty axes that say so."""
    from matplotlib.patches import Patch

    r = series.rates(h)
    fig = _figure(8.0, 3.2)
    ax = fig.subplots()
    ax.set_xlabel("seconds since the first send")
    ax.set_title(title, fontsize=10, loc="left")
    if not r.starts:
        ax.set_ylabel("deliveries/s")
        ax.text(0.5, 0.5, "nothing was sent", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, path)
    ax.set_ylabel(f"deliveries/s ({r.width_s:g} s buckets)", color=GREEN)
    edges = [*r.starts, r.starts[-1] + r.width_s]
    spans = series.fault_spans(h, windows)
    start, end = series.extent(r, spans)  # a fault that never ended runs to the right edge
    for s in spans:
        ax.axvspan(s.window[0], min(s.window[1], end), color=WINDOW, alpha=0.5, lw=0)
        ax.axvspan(s.applied, min(s.healed, end), color=FAULT, alpha=0.5, lw=0)
        ax.text(s.applied, 0.97, f" {s.label}", transform=ax.get_xaxis_transform(), fontsize=8, va="top")
    # deliveries are sent/s times the room's other members: each rate gets its own axis to stay readable
    sent_ax = ax.twinx()
    sent_ax.stairs(r.sent_per_s, edges, color=BLUE, label="messages sent/s (right)")
    sent_ax.set_ylabel("messages sent/s", color=BLUE)
    sent_ax.set_ylim(bottom=0, top=max(r.sent_per_s) * 1.15 or 1)
    ax.stairs(r.delivered_per_s, edges, color=GREEN, lw=1.6, label="deliveries/s (left)")
    ax.set_xlim(start, end)
    ax.set_ylim(bottom=0, top=max(r.delivered_per_s) * 1.15 or 1)
    handles = ax.get_legend_handles_labels()[0] + sent_ax.get_legend_handles_labels()[0]
    if spans:
        handles += [Patch(color=FAULT, alpha=0.5, label="fault: applied to healed"),
                    Patch(color=WINDOW, alpha=0.5, label="what the fault reached, until recovered (±0.5 s)")]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=len(handles))
    return _save(fig, path)


def placement_png(first: dict[str, int], end: dict[str, int] | None, path: Path, *, title: str = "") -> Path:
    """Clients per replica as bars: where each client first got in and, when `end` is given (someone
    reconnected), where each client was connected when the run ended."""
    from matplotlib.ticker import MaxNLocator

    names = sorted(set(first) | set(end or {}))
    fig = _figure(min(12.0, 2.0 + 0.8 * max(1, len(names)) * (2 if end is not None else 1)), 3.0)
    ax = fig.subplots()
    if not names:
        ax.text(0.5, 0.5, "no replica", ha="center", va="center", transform=ax.transAxes)
    groups = [("first connection", first, BLUE)] + ([("connected at the end", end, GREEN)] if end is not None else [])
    width = 0.8 / len(groups)
    for i, (label, counts, colour) in enumerate(groups):
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(names))]
        bars = ax.bar(xs, [counts.get(n, 0) for n in names], width, color=colour, label=label)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 8 else 0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("clients")
    ax.set_ylim(0, max([1, *first.values(), *(end or {}).values()]) * 1.15)
    if end is not None:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    return _save(fig, path)


def run_pngs(result: RunResult, out_dir: Path) -> list[Path]:
    """timeline.png and placement.png for one run, into `out_dir` (the run's results directory)."""
    h, name = result.history, result.scenario.name
    end = series.placement_at_end(h) if series.reconnected(h) else None
    acc = result.outcome.accounting
    return [timeline_png(h, acc.windows, out_dir / TIMELINE_PNG,
                         title=f"{name}: messages sent and deliveries per second"),
            placement_png(acc.placement, end, out_dir / PLACEMENT_PNG,
                          title=f"{name}: clients per replica")]


def capacity_series(steps: Sequence[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Steps grouped by (pattern, replicas), each group in offered order; patterns in the order they
    first appear, replica counts ascending. A step without a key of STEP_KEYS is refused by index."""
    for i, step in enumerate(steps):
        missing = [k for k in STEP_KEYS if k not in step]
        if missing:
            raise ValueError(f"capacity step {i} has no {', '.join(missing)}; each step needs {', '.join(STEP_KEYS)}")
    order = list(dict.fromkeys(s["pattern"] for s in steps))
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for s in sorted(steps, key=lambda s: (order.index(s["pattern"]), s["replicas"], s["offered"])):
        groups.setdefault((s["pattern"], s["replicas"]), []).append(s)
    return groups


def series_label(key: tuple[str, int]) -> str:
    return f"{key[0]} x{key[1]}"


def latency_points(rows: Sequence[dict[str, Any]]) -> list[tuple[float, float, float | None]]:
    """(delivered/s, p99 ms, p50 ms or None) for the steps that delivered something: a p99 of None (or
    not above 0, which a log axis cannot show) is skipped."""
    out = []
    for s in rows:
        p99, p50 = s["p99_ms"], s["p50_ms"]
        if p99 is not None and p99 > 0:
            out.append((float(s["delivered_per_s"]), float(p99), float(p50) if p50 is not None and p50 > 0 else None))
    return out


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _series_colours(keys: Sequence[tuple[str, int]]) -> list[Any]:
    """One hue per pattern, darker with more replicas: a pattern's lines read as one family."""
    from matplotlib import colormaps

    hues = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
    patterns = list(dict.fromkeys(k[0] for k in keys))
    counts = {p: sorted({k[1] for k in keys if k[0] == p}) for p in patterns}
    out = []
    for pattern, replicas in keys:
        ladder = counts[pattern]
        shade = 0.45 + 0.5 * ladder.index(replicas) / max(1, len(ladder) - 1)
        out.append(colormaps[hues[patterns.index(pattern) % len(hues)]](shade))
    return out


def _container_order(name: str) -> tuple[int, int, str]:
    """app-1, app-2 … app-10 in number order, then the other containers by name, the generator last."""
    head, _, number = name.rpartition("-")
    if head == "app" and number.isdigit():
        return (0, int(number), "")
    return (2, 0, "") if name == "generator" else (1, 0, name)


def latency_png(groups: dict[tuple[str, int], list[dict[str, Any]]], path: Path, *, knee_ms: float = KNEE_MS) -> Path:
    """p99 (solid) and p50 (dashed, same colour) in ms on a log axis against deliveries per second, one
    line per (pattern, replicas), and the knee threshold."""
    from matplotlib.lines import Line2D

    fig = _figure(8.5, 4.5)
    ax = fig.subplots()
    drawn = 0
    for key, colour in zip(groups, _series_colours(list(groups))):
        points = latency_points(groups[key])
        if not points:
            continue
        drawn += 1
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", ms=3, color=colour, label=series_label(key))
        p50 = [(p[0], p[2]) for p in points if p[2] is not None]
        ax.plot([p[0] for p in p50], [p[1] for p in p50], "--", lw=1, color=colour)
    ax.axhline(knee_ms, color="grey", ls=":", lw=1)
    if not drawn:
        ax.text(0.5, 0.5, "no step delivered anything", ha="center", va="center", transform=ax.transAxes)
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_xlabel("deliveries per second")
    ax.set_ylabel("latency ms (log)")
    ax.set_title("latency against throughput", fontsize=10, loc="left")
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", label="p99"), Line2D([], [], color="black", ls="--", label="p50"),
                Line2D([], [], color="grey", ls=":", label=f"knee threshold {knee_ms:g} ms")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def cpu_png(groups: dict[tuple[str, int], list[dict[str, Any]]], path: Path, *, cores: int | None = None) -> Path:
    """A panel per (pattern, replicas): CPU in cores of every container and of the load generator, and
    their sum, at each offered rate; a dotted line at the machine's cores. One y scale for all panels."""
    from matplotlib.lines import Line2D

    keys = list(groups) or [("no steps", 0)]
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = _figure(1.4 + 2.9 * ncols, 0.9 + 2.3 * nrows)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).flat
    names = sorted({n for rows in groups.values() for s in rows for n in s["cpu"]} | {"generator"},
                   key=_container_order)
    sums = {key: [sum(v for v in s["cpu"].values() if v is not None) for s in rows] for key, rows in groups.items()}
    top = max([cores or 0, 1.0, *(v for vs in sums.values() for v in vs)]) * 1.08
    colours = dict(zip(names, _colours(len(names))))
    colours["generator"] = "black"
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes, keys):
        rows = groups.get(key, [])
        ax.set_title(series_label(key) if rows else "no steps", fontsize=9)
        xs = [s["offered"] for s in rows]
        for name in names:
            ys = [s["cpu"].get(name) for s in rows]
            if any(y is not None for y in ys):
                ax.plot(xs, [math.nan if y is None else y for y in ys], "-o", ms=2.5, lw=1, color=colours[name])
        ax.plot(xs, sums.get(key, []), "--", lw=1, color="grey")
        host = [s.get("host_cpu") for s in rows]
        if any(h is not None for h in host):
            ax.plot(xs, [math.nan if h is None else h for h in host], ":", lw=1.5, color="black")
        if cores:
            ax.axhline(cores, color="grey", ls=":", lw=1)
        ax.set_ylim(0, top)
        ax.tick_params(labelsize=7)
    fig.supxlabel("offered messages/s", fontsize=9)
    fig.supylabel("CPU (cores)", fontsize=9)
    handles = [Line2D([], [], color=colours[n], marker="o", ms=2.5, label=n) for n in names]
    handles.append(Line2D([], [], color="grey", ls="--", label="sum"))
    handles.append(Line2D([], [], color="black", ls=":", lw=1.5, label="machine busy (all)"))
    if cores:
        handles.append(Line2D([], [], color="grey", ls=":", label=f"machine: {cores} cores"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    return _save(fig, path)


def capacity_pngs(steps: list[dict[str, Any]], out_dir: Path, *, knee_ms: float = KNEE_MS,
                  cores: int | None = os.cpu_count()) -> list[Path]:
    """latency-vs-throughput.png and cpu.png for the capacity bench's steps, into `out_dir` (created)."""
    groups = capacity_series(steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [latency_png(groups, out_dir / LATENCY, knee_ms=knee_ms), cpu_png(groups, out_dir / CPU, cores=cores)]


def replicas_over_time_png(panels: Sequence[tuple[str, dict[str, list[Any]]]], path: Path, *,
                           marks: Sequence[tuple[float, str]] = ((0.0, "trigger"),),
                           xlabel: str = "seconds after the trigger") -> Path:
    """One panel per series (a title and {"t": [...], replica: [...]}): connections open on each replica
    over time, with each mark (seconds, label) drawn as a vertical line. Used by the storm bench."""
    fig = _figure(8.0, 2.2 * max(1, len(panels)) + 0.6)
    axes = fig.subplots(max(1, len(panels)), 1, sharex=True, squeeze=False).flat
    for ax, (title, series_) in zip(axes, panels):
        names = [k for k in series_ if k != "t"]
        for colour, name in zip(_colours(len(names)), names):
            ax.plot(series_["t"], series_[name], label=name, color=colour, linewidth=1.4)
        for at, label in marks:
            ax.axvline(at, color=FAULT, linewidth=1.0, linestyle="--")
            ax.text(at, 1.0, f" {label}", transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        ax.set_ylabel("connections")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="lower right")
    fig.axes[-1].set_xlabel(xlabel)
    return _save(fig, path)
