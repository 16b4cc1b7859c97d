"""Ctrl-C and SIGTERM at any moment of a run: exit 130 within 2 s, nothing left behind, and a line that
says what was removed. The lab runs as a terminal runs it: in its own process group, SIGINT at its default,
the signal sent to the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs.settings import ROOT

from .conftest import lab_resources

#: how many moments of a run get a signal: spread evenly over a whole `pubsub` run measured just before
#: (engine check and image lookup, network and container creation, readiness, the workload, the drain,
#: the teardown: about 4-5 s in all on 2 cores, more on a busy machine)
MOMENTS = 12
STOP_WITHIN_S = 2.0


def whole_run(tmp_path: Path) -> float:
    """Seconds a `pubsub` run takes from start to exit, undisturbed."""
    started = time.monotonic()
    proc = start(tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-500:]
    return time.monotonic() - started


def start(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labs", "run", "pubsub", "--results", str(tmp_path)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "CI": "true"},
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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
    return proc.returncode, time.monotonic() - signalled, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_any_moment_stops_the_run_within_2s_and_leaves_nothing(sig, client, images, tmp_path,
                                                                           nothing_left):
    took_whole = whole_run(tmp_path)
    delays = [round(took_whole * k / (MOMENTS + 1), 2) for k in range(1, MOMENTS + 1)]
    outcomes = []
    for delay in delays:
        code, took, err = interrupt(start(tmp_path), sig, delay)
        left = lab_resources(client)
        outcomes.append((delay, code, round(took, 2), "wslab-" in err))
        assert left == ([], []), f"signal at {delay}s left {left}; stderr: {err[-500:]}"
        if code is None:
            continue  # the run had finished before this delay
        assert code == 130, f"signal at {delay}s: exit {code}; stderr: {err[-500:]}"
        assert took <= STOP_WITHIN_S, f"signal at {delay}s: exit took {took:.2f}s"
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"wslab: interrupted by {signal.Signals(sig).name}; removed: "), err[-500:]
    interrupted = [o for o in outcomes if o[1] is not None]
    print(f"{signal.Signals(sig).name}: whole run {took_whole:.2f}s; (delay s, exit, signal-to-exit s, "
          f"removed named) {outcomes}")
    assert len(interrupted) >= 10, outcomes
    # signals that landed once containers existed: the line names the containers and networks removed
    assert sum(1 for o in interrupted if o[3]) >= 5, outcomes


def test_a_second_ctrl_c_does_not_cut_the_teardown_short(client, images, tmp_path, nothing_left):
    took_whole = whole_run(tmp_path)
    for delay in (took_whole * 0.35, took_whole * 0.55, took_whole * 0.75):
        code, took, err = interrupt(start(tmp_path), signal.SIGINT, delay, again_after=0.05)
        assert lab_resources(client) == ([], []), err[-500:]
        assert code in (130, None), err[-500:]
