"""The signal discipline, in this process: a critical section defers a signal, never drops it; a teardown
runs to its end; a cancellable section cancels instead of raising."""

import os
import signal

import pytest

from labs import signals


@pytest.fixture(autouse=True)
def handlers():
    saved = {s: signal.getsignal(s) for s in signals.SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signals.install()
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_outside_a_critical_section_a_signal_raises_at_once():
    with pytest.raises(signals.Interrupted) as info:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert info.value.signum == signal.SIGTERM


def test_a_critical_section_finishes_then_the_signal_is_raised():
    steps = []
    with pytest.raises(signals.Interrupted):
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")
            with signals.deferred():  # nested: raised only when the outermost ends
                steps.append("nested")
            steps.append("still inside")
    assert steps == ["after the signal", "nested", "still inside"]


def test_a_second_signal_during_the_teardown_does_not_cut_it_short():
    steps = []
    with pytest.raises(signals.Interrupted):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        finally:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("removed everything")
    assert steps == ["removed everything"]


def test_a_signal_during_a_teardown_nobody_interrupted_is_raised_after_it():
    steps = []
    with pytest.raises(signals.Interrupted):
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("removed everything")
    assert steps == ["removed everything"]


def test_under_cancelling_a_signal_calls_cancel_and_check_raises_afterwards():
    cancelled = []
    with signals.cancelling(lambda: cancelled.append(True)):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert cancelled == [True]
    with pytest.raises(signals.Interrupted):
        signals.check()


def test_after_done_a_signal_exits_130_at_once():
    import subprocess
    import sys

    code = ("import os, signal, time; from labs import signals; signals.install(); signals.done(); "
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    assert r.returncode == 130 and "interrupted by SIGTERM" in r.stderr and "Traceback" not in r.stderr
