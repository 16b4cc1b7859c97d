"""report.html: one run as a page that opens from the file system, with nothing to fetch.

The verdict and the declared checks, the run's row of the table, a delivery timeline (per 100 ms of send
time: deliveries that arrived and that were lost, with each fault's window shaded), the clients per
replica, and the balancer's config that ran. Pictures are inline SVG drawn here from the numbers in
`series`, which also feeds the PNGs beside it; every text is escaped.
"""

from __future__ import annotations

import html
import math

from ..accounting.history import History
from .result import RunResult
from .series import BIN_S, first_send, timeline

WIDTH, HEIGHT, PAD = 760, 220, 36
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.pass { color: #176c2c; } .fail { color: #a11; } .unknown { color: #8a5a00; }
table { border-collapse: collapse; font-size: 12px; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
"""


def timeline_svg(h: History) -> str:
    series = timeline(h)
    t0 = first_send(h)
    if not series or t0 is None:
        return "<p>Nothing was sent.</p>"
    span = max(series[-1][0] + BIN_S, max((f.healed or f.applied) - t0 for f in h.faults) if h.faults else 0)
    top = max(a + b for _, a, b in series) or 1
    x = lambda t: PAD + (WIDTH - 2 * PAD) * t / span  # noqa: E731
    y = lambda n: HEIGHT - PAD - (HEIGHT - 2 * PAD) * n / top  # noqa: E731
    bar = max(1.0, (WIDTH - 2 * PAD) * BIN_S / span - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="deliveries per {BIN_S:g} s of send time">']
    for f in h.faults:
        lo, hi = f.applied - t0, (f.healed if f.healed is not None else t0 + span) - t0
        parts.append(f'<rect x="{x(lo):.1f}" y="{PAD}" width="{max(1.0, x(hi) - x(lo)):.1f}" '
                     f'height="{HEIGHT - 2 * PAD}" fill="#f3d9a4" opacity="0.6"/>')
        parts.append(f'<text x="{x(lo):.1f}" y="{PAD - 4}">{html.escape(f.kind)} {html.escape(f.target)}</text>')
    for t, arrived, lost in series:
        parts.append(f'<rect x="{x(t):.1f}" y="{y(arrived):.1f}" width="{bar:.1f}" '
                     f'height="{y(0) - y(arrived):.1f}" fill="#3a8f4f"/>')
        if lost:
            parts.append(f'<rect x="{x(t):.1f}" y="{y(arrived + lost):.1f}" width="{bar:.1f}" '
                         f'height="{y(arrived) - y(arrived + lost):.1f}" fill="#c43c3c"/>')
    parts.append(f'<line x1="{PAD}" y1="{y(0)}" x2="{WIDTH - PAD}" y2="{y(0)}" stroke="#888"/>')
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}">0 s</text>')
    parts.append(f'<text x="{WIDTH - PAD - 30}" y="{HEIGHT - 8}">{span:.1f} s</text>')
    parts.append(f'<text x="2" y="{PAD + 4}">{top}</text>')
    parts.append("</svg>")
    return "".join(parts)


def placement_svg(placement: dict[str, int]) -> str:
    if not placement:
        return "<p>No client got in.</p>"
    most = max(placement.values()) or 1
    row = 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{row * len(placement) + 8}" '
             f'role="img" aria-label="clients per replica">']
    for i, (name, n) in enumerate(placement.items()):
        w = (WIDTH - 160) * n / most
        parts.append(f'<text x="0" y="{i * row + 14}">{html.escape(name)}</text>')
        parts.append(f'<rect x="70" y="{i * row + 3}" width="{w:.1f}" height="{row - 6}" fill="#4a78b5"/>')
        parts.append(f'<text x="{76 + w:.1f}" y="{i * row + 14}">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cell(value: float | None) -> str:
    if value is None:
        return "undefined"
    return "inf" if isinstance(value, float) and math.isinf(value) else f"{value:g}"


def page(result: RunResult) -> str:
    s, v = result.scenario, result.verdict
    css = {"as expected": "pass", "NOT as expected": "fail"}.get(v.validity.value, "unknown")
    row = {"scenario": s.name, **result.protocol.columns(result.outcome), "verdict": result.verdict_text}
    esc = html.escape
    checks = "".join(f"<tr><td>{esc(c.metric.value)}</td><td>{esc(str(c.bound))}</td><td>{_cell(c.value)}</td>"
                     f"<td>{'holds' if c.holds else 'does not hold'}</td></tr>" for c in v.checks)
    facts = "".join(f"<li>{esc(k)}: {esc(str(val))}</li>" for k, val in
                    {**result.images, **result.versions}.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(s.name)} — {esc(result.verdict_text)}</title>
<style>{STYLE}</style></head><body>
<h1>{esc(s.name)} — <span class="{css}">{esc(result.verdict_text)}</span></h1>
<p>{esc(s.description.strip())}</p>
{f'<p class="{css}">{esc(v.reason)}</p>' if v.reason else ''}
<table><tr>{''.join(f'<th>{esc(k)}</th>' for k in row)}</tr><tr>{''.join(f'<td>{esc(c)}</td>' for c in row.values())}</tr></table>
<h2>Declared expectation</h2>
<table><tr><th>metric</th><th>declared</th><th>measured</th><th></th></tr>{checks}</table>
<h2>Deliveries per {BIN_S:g} s of send time</h2>
<p>Green: arrived; red: lost; shaded: a fault, from applied to healed.</p>
{timeline_svg(result.history)}
<h2>Clients per replica</h2>
{placement_svg(result.outcome.accounting.placement)}
<h2>{esc(result.scenario.topology.balancer.config_file)}</h2>
<pre>{esc(result.balancer_conf)}</pre>
<h2>Images and versions</h2>
<ul>{facts}</ul>
<p>Run {esc(result.run_id)} at {esc(result.stamp)}; up {result.timings.get('up', 0):.2f} s, down {result.timings.get('down', 0):.2f} s.</p>
</body></html>
"""
