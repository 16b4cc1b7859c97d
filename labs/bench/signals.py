"""How fast a signal stops a run: `python -m labs.bench signals --runs 12` (`make bench-signals`).

Times one whole `labs run pubsub`, then sends SIGINT and SIGTERM to a fresh run at `runs` moments spread
evenly over it (engine check, image lookup, creates, starts, readiness, workload, drain, teardown), the
process group signalled as a terminal does, and records the exit code, the seconds from the signal to the
exit, and whether the run's containers and networks are gone. The target: every run exits 130 within 2 s.
Results go to results/bench/signals-<stamp>.json. tests/docker/test_signals.py runs the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import settings
from ..console import EXIT_FAIL, EXIT_PASS
from ..errors import RunFailed
from ..settings import ROOT
from .common import BenchParser, started

TARGET_S = 2.0
#: an exit 0 this soon after the signal means the run had already ended when the signal was sent
RACE_S = 0.05


def start(results: Path) -> subprocess.Popen[str]:
    """`labs run pubsub` as a terminal starts it: its own process group, SIGINT at its default."""
    return subprocess.Popen(
        [sys.executable, "-m", "labs", "run", "pubsub", "--results", str(results)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "CI": "true"},
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def whole_run(results: Path, *, runs: int = 2) -> float:
    """Seconds the fastest of `runs` undisturbed `pubsub` runs takes from start to exit."""
    took = []
    for _ in range(runs):
        began = time.monotonic()
        proc = start(results)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # interrupted, or no end in sight: the run removes what it started
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
        if proc.returncode != 0:
            raise RunFailed(f"an undisturbed run failed ({proc.returncode}): {err[-500:]}")
        took.append(time.monotonic() - began)
    return min(took)


def interrupt(proc: subprocess.Popen[str], sig: int, delay: float, *, again_after: float | None = None
              ) -> tuple[int | None, float, str]:
    """Signal the run's process group `delay` s after it started; return (exit code, seconds from the
    signal to the exit, stderr). Exit code None: the run had already ended before the signal."""
    started = time.monotonic()
    while time.monotonic() - started < delay:
        if proc.poll() is not None:
            _, err = proc.communicate()
            return None, 0.0, err
        time.sleep(0.01)
    signalled = time.monotonic()
    os.killpg(proc.pid, sig)
    if again_after is not None:
        time.sleep(again_after)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - signalled
    if proc.returncode == 0 and took < RACE_S:
        # It had exited between the last poll and the signal (an exited child takes a signal without a
        # word): the run was over. A signal the lab swallowed would show as exit 0 seconds later instead.
        return None, 0.0, err
    return proc.returncode, took, err


def moments(whole_s: float, count: int) -> list[float]:
    """`count` moments spread evenly over the first 90% of a run (a run varies by a few tenths of a second:
    a moment past its end would interrupt nothing)."""
    return [round(0.9 * whole_s * k / (count + 1), 2) for k in range(1, count + 1)]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One signal's runs and its figures: signal-to-exit median and max over the runs the signal interrupted
    (`interrupted` of `of`; a run that had ended before its moment is no figure), None when it landed in none."""
    stops = [r["stop_s"] for r in rows if r["exit"] is not None]
    return {"runs": rows, "interrupted": len(stops), "of": len(rows),
            "exit_130": sum(1 for r in rows if r["exit"] == 130), "left": sum(r["left"] for r in rows),
            "median_s": statistics.median(stops) if stops else None, "max_s": max(stops, default=None)}


def summary_line(name: str, s: dict[str, Any]) -> str:
    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    return (f"{name}: {s['interrupted']} of {s['of']} runs interrupted, exit 130 in {s['exit_130']}, left behind "
            f"{s['left']}, signal to exit median {sec(s['median_s'])} max {sec(s['max_s'])} over "
            f"{s['interrupted']} run(s) (target {TARGET_S}s)")


def passed(summaries: list[dict[str, Any]]) -> bool:
    """Every signal interrupted at least one run, and none took longer than the target to exit."""
    return all(s["max_s"] is not None and s["max_s"] <= TARGET_S for s in summaries)


def parser(prog: str) -> BenchParser:
    return BenchParser(prog, __doc__, runs=12, runs_help="moments per signal (default 12)")


def run(args: argparse.Namespace) -> int:
    # what this owner's runs left (WSLAB_OWNER passes to the runs): not what others sharing the engine run
    label = {"label": [settings.LABEL, f"{settings.OWNER_LABEL}={settings.OWNER}"]}
    out: dict[str, object] = {"benchmark": "signals", "target_s": TARGET_S}
    summaries = []
    with started("signals") as bench, tempfile.TemporaryDirectory() as tmp:
        client = bench.client
        whole = whole_run(Path(tmp))
        out["whole_run_s"] = whole
        for sig in (signal.SIGINT, signal.SIGTERM):
            rows: list[dict[str, Any]] = []
            for delay in moments(whole, args.runs):
                code, took, _ = interrupt(start(Path(tmp)), sig, delay)
                left = len(client.containers.list(all=True, filters=label)) + len(client.networks.list(filters=label))
                rows.append({"delay_s": delay, "exit": code, "stop_s": round(took, 3), "left": left})
            s = summary(rows)
            summaries.append(s)
            out[signal.Signals(sig).name] = s
            print(summary_line(signal.Signals(sig).name, s))
        out["machine"] = bench.machine()
        path = bench.file(".json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")
    return EXIT_PASS if passed(summaries) else EXIT_FAIL
