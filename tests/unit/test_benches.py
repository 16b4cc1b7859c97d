"""The benches' command lines and summaries, without Docker: bad input is refused before anything starts,
and a figure nobody measured is None, with the number of runs behind every median."""

import importlib
import signal
import sys

import pytest

from labs.infra import engine


@pytest.fixture
def nothing_starts(monkeypatch):
    """Any attempt to reach Docker fails the test instead of starting something."""
    def refuse(*args, **kwargs):
        raise AssertionError("the bench went on to start something")

    monkeypatch.setattr(engine, "ensure_engine", refuse)
    monkeypatch.setattr(engine, "connect_existing", refuse)
    for name in ("labs.bench.lifecycle", "labs.bench.faults", "labs.bench.capacity", "labs.bench.replicas"):
        monkeypatch.setattr(importlib.import_module(name), "ensure_engine", refuse)


@pytest.fixture(autouse=True)
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


BENCHES = [("labs.bench.lifecycle", ["lifecycle"]), ("labs.bench.faults", []), ("labs.bench.signals", []),
           ("labs.bench.capacity", []), ("labs.bench.replicas", []), ("labs.bench.connections.run", []),
           ("labs.bench.partitioning", [])]


@pytest.mark.parametrize("runs", ["0", "-1"])
@pytest.mark.parametrize("module, argv", BENCHES)
def test_no_runs_or_fewer_is_one_line_and_exit_2_before_anything_starts(module, argv, runs, nothing_starts,
                                                                        monkeypatch, capsys):
    main = importlib.import_module(module).main
    monkeypatch.setattr(sys, "argv", [module, *argv, "--runs", runs])
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs" in err[0], err


def test_a_signal_that_landed_in_no_run_has_no_figures_and_says_so():
    from labs.bench.signals import passed, summary, summary_line

    rows = [{"delay_s": 0.5, "exit": None, "stop_s": 0.0, "left": 0},
            {"delay_s": 1.0, "exit": None, "stop_s": 0.0, "left": 0}]
    s = summary(rows)
    assert (s["interrupted"], s["of"], s["median_s"], s["max_s"]) == (0, 2, None, None)
    assert summary_line("SIGINT", s) == ("SIGINT: 0 of 2 runs interrupted, exit 130 in 0, left behind 0, signal to "
                                         "exit median - max - over 0 run(s) (target 2.0s)")
    assert not passed([s])


def test_the_signal_figures_rest_on_the_runs_the_signal_interrupted():
    from labs.bench.signals import passed, summary, summary_line

    rows = [{"delay_s": 0.5, "exit": 130, "stop_s": 0.4, "left": 0},
            {"delay_s": 1.0, "exit": 130, "stop_s": 0.6, "left": 1},
            {"delay_s": 9.0, "exit": None, "stop_s": 0.0, "left": 0}]
    s = summary(rows)
    assert (s["interrupted"], s["of"], s["exit_130"], s["left"], s["median_s"], s["max_s"]) == (2, 3, 2, 1, 0.5, 0.6)
    assert summary_line("SIGTERM", s).endswith("median 0.50s max 0.60s over 2 run(s) (target 2.0s)")
    assert passed([s]) and not passed([s, summary(rows[2:])])


def test_bench_lifecycle_answers_sigterm_like_every_bench_exit_130_with_its_engine_closed(monkeypatch, capsys):
    import os
    import runpy
    from types import SimpleNamespace

    from labs import signals
    from labs.infra import images

    closed = []
    monkeypatch.setattr(engine, "ensure_engine", lambda **kw: SimpleNamespace(close=lambda: closed.append(True)))

    def sigterm_while_looking_up_images(client, **kw):
        assert signal.getsignal(signal.SIGTERM) is signals._handler, "bench-lifecycle installed no signal handler"
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the bench")

    monkeypatch.setattr(images, "ensure_images", sigterm_while_looking_up_images)
    monkeypatch.setattr(sys, "argv", ["labs.bench.lifecycle", "lifecycle", "--runs", "1"])
    monkeypatch.delitem(sys.modules, "labs.bench.lifecycle", raising=False)
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("labs.bench.lifecycle", run_name="__main__")
    assert exit.value.code == 130 and closed == [True]
    assert capsys.readouterr().err.strip() == "bench-lifecycle: interrupted"


def fault_run(accounting, reason=""):
    from types import SimpleNamespace

    return SimpleNamespace(accounting=accounting, verdict=SimpleNamespace(reason=reason), passed=not reason)


def test_a_fault_run_whose_checker_crashed_adds_nothing_to_any_median():
    from labs import scenario
    from labs.accounting.checker import Accounting
    from labs.bench.faults import medians, record, row

    crash = "checker failed: KeyError('a-1')"
    got = [record(r) for r in (fault_run(Accounting(sent=1080, expected=8640, lost=30, max_gap_s=0.07)),
                               fault_run(Accounting(), crash),  # today's checker: a zero accounting
                               fault_run(Accounting(sent=1080, expected=8640, lost=20, max_gap_s=0.05)),
                               fault_run(None, crash))]  # the checker to come: no accounting at all
    assert got[1]["lost"] is None and got[3]["sent"] is None and got[3]["checker_failed"]
    m = medians(got)
    assert m["lost"] == {"median": 25, "min": 20, "max": 30, "runs": 2, "left_out": 2}
    text = row(scenario.load("fault-pubsub-kill-replica"), got)
    assert "| 2/4 runs, 2 checker failed |" in text and "| 25 (20-30) on 2 runs, 2 left out |" in text


def test_a_figure_one_run_did_not_measure_is_left_out_of_that_median_only():
    from labs.bench.faults import cell, medians

    got = [{"lost": 3, "max_gap_s": None}, {"lost": 5, "max_gap_s": 0.25}, {"lost": 4, "max_gap_s": None}]
    m = medians(got, ("lost", "max_gap_s"))
    assert m["lost"]["runs"] == 3 and cell(m["lost"]) == "4 (3-5)"
    assert cell(m["max_gap_s"]) == "0.250 on 1 run, 2 left out"
    assert cell(medians([{"lost": None}], ("lost",))["lost"]) == "- on 0 runs, 1 left out"
