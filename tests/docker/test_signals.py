"""Ctrl-C and SIGTERM at any moment of a run: exit 130, nothing left behind, and a line that says what
was removed. The lab runs as a terminal runs it: in its own process group, SIGINT at its default, the
signal sent to the whole group. How fast it stops is a benchmark (`make bench-signals`, target 2 s); here
a run that takes more than HANG_S to stop is a hang. The test samples MOMENTS moments per signal; the sweep
over more of them is `make bench-signals`' job."""

from __future__ import annotations

import signal

import pytest

from labs.bench.signals import interrupt, moments, start, whole_run

from .conftest import lab_resources

MOMENTS = 5
HANG_S = 10.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_any_moment_exits_130_and_leaves_nothing(sig, client, images, tmp_path, nothing_left):
    took_whole = whole_run(tmp_path)
    outcomes = []
    for delay in moments(took_whole, MOMENTS):
        code, took, err = interrupt(start(tmp_path), sig, delay)
        left = lab_resources(client)
        outcomes.append((delay, code, round(took, 2), "wslab-" in err))
        assert left == ([], []), f"signal at {delay}s left {left}; stderr: {err[-500:]}"
        if code is None:
            continue  # the run had finished before this moment
        assert code == 130, f"signal at {delay}s: exit {code}; stderr: {err[-500:]}"
        assert took <= HANG_S, f"signal at {delay}s: exit took {took:.2f}s"
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"wslab: interrupted by {signal.Signals(sig).name}; removed: "), err[-500:]
    interrupted = [o for o in outcomes if o[1] is not None]
    print(f"{signal.Signals(sig).name}: whole run {took_whole:.2f}s; (delay s, exit, signal-to-exit s, "
          f"removed named) {outcomes}")
    assert len(interrupted) >= MOMENTS - 1, outcomes
    # signals that landed once containers existed: the line names the containers and networks removed
    assert sum(1 for o in interrupted if o[3]) >= 2, outcomes


def test_a_second_ctrl_c_does_not_cut_the_teardown_short(client, images, tmp_path, nothing_left):
    took_whole = whole_run(tmp_path)
    for delay in (took_whole * 0.35, took_whole * 0.55, took_whole * 0.75):
        code, took, err = interrupt(start(tmp_path), signal.SIGINT, delay, again_after=0.05)
        assert lab_resources(client) == ([], []), err[-500:]
        assert code in (130, None), err[-500:]
