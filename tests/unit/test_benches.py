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
    for name in ("labs.bench", "labs.bench_faults", "labs.bench_capacity", "labs.bench_replicas"):
        monkeypatch.setattr(importlib.import_module(name), "ensure_engine", refuse)


@pytest.fixture(autouse=True)
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


BENCHES = [("labs.bench", ["lifecycle"]), ("labs.bench_faults", []), ("labs.bench_signals", []),
           ("labs.bench_capacity", []), ("labs.bench_replicas", []), ("labs.bench_connections", []),
           ("labs.bench_partitioning", [])]


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
