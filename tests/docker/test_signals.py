"""Ctrl-C and SIGTERM at each phase of a run: exit 130, nothing left behind, and a line that says what
was removed. The lab runs as a terminal runs it: in its own process group, SIGINT at its default, the
signal sent to the whole group. Each signal lands at a moment a progress line marks (while containers are
created, while the clients send, while the stack is removed), not at a time that a slower start would
shift. How fast it stops is a benchmark (`make bench-signals`, 12 moments per signal, target 2 s); here a
run that takes more than HANG_S to stop is a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labs.settings import ROOT

from .conftest import lab_resources

HANG_S = 10.0
#: progress lines of `labs run pubsub` that mark its phases
CREATING, SENDING, REMOVING = "created 2 network(s)", "clients in room", "removing the stack"


def start(results: Path) -> subprocess.Popen[str]:
    """`labs run pubsub` as a terminal starts it, its progress lines on stderr (CI=true would silence them)."""
    return subprocess.Popen(
        [sys.executable, "-m", "labs", "run", "pubsub", "--results", str(results)], cwd=ROOT, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={k: v for k, v in os.environ.items() if k != "CI"},
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt(proc: subprocess.Popen[str], sig: int, *at: str) -> tuple[int, float, list[str]]:
    """Signal the run's process group when each line of `at` appears, in turn; return (exit code, seconds
    from the last signal to the exit, stderr's lines). A run still going after 120 s is killed."""
    watchdog = threading.Timer(120, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    lines: list[str] = []
    signalled = 0.0
    try:
        assert proc.stderr is not None
        waiting = list(at)
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if waiting and waiting[0] in line:
                waiting.pop(0)
                signalled = time.monotonic()
                os.killpg(proc.pid, sig)
        code = proc.wait()
    finally:
        watchdog.cancel()
    assert not waiting, f"the run ended before {waiting[0]!r}: {lines[-5:]}"
    return code, time.monotonic() - signalled, lines


@pytest.mark.parametrize("at", [CREATING, SENDING, REMOVING], ids=["creating", "sending", "removing"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_each_phase_exits_130_names_what_it_removed_and_leaves_nothing(sig, at, client, images,
                                                                                   tmp_path, nothing_left):
    code, took, lines = interrupt(start(tmp_path), sig, at)
    assert lab_resources(client) == ([], [])
    assert code == 130, lines[-5:]
    assert took <= HANG_S, f"exit took {took:.2f}s after the signal"
    # containers existed at each of these moments: the line names the containers and networks removed
    name = signal.Signals(sig).name
    assert lines[-1].startswith(f"wslab: interrupted by {name}; removed: wslab-"), lines[-5:]


def test_a_second_ctrl_c_during_the_teardown_does_not_cut_it_short(client, images, tmp_path, nothing_left):
    code, took, lines = interrupt(start(tmp_path), signal.SIGINT, CREATING, REMOVING)
    assert lab_resources(client) == ([], [])
    assert code == 130 and took <= HANG_S, lines[-5:]
    assert lines[-1].startswith("wslab: interrupted by SIGINT; removed: wslab-"), lines[-5:]
