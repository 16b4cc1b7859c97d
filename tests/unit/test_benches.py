"""The benches' command lines, exit codes and summaries, without Docker: bad input is refused before anything
starts (one line, exit 2), every bench follows one exit-code rule, and a figure nobody measured is None,
with the number of runs behind every median."""

import signal
from types import SimpleNamespace

import pytest

from labs.bench.__main__ import BENCHES, main
from labs.bench.common import run_bench, started
from labs.errors import EngineError, LabError, RunFailed, StackError
from labs.infra import engine, images


@pytest.fixture
def nothing_starts(monkeypatch):
    """Any attempt to reach Docker fails the test instead of starting something."""
    def refuse(*args, **kwargs):
        raise AssertionError("the bench went on to start something")

    monkeypatch.setattr(engine, "ensure_engine", refuse)
    monkeypatch.setattr(engine, "connect_existing", refuse)
    monkeypatch.setattr(images, "ensure_images", refuse)


@pytest.fixture(autouse=True)
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_every_bench_has_an_entry_and_help():
    assert set(BENCHES) == {"lifecycle", "faults", "signals", "capacity", "replicas", "connections", "partitioning",
                            "defaults", "storm"}
    for name in BENCHES:
        assert main([name, "--help"]) == 0


@pytest.mark.parametrize("argv, words", [([], "no bench named"), (["kafka"], "unknown bench 'kafka'")])
def test_no_bench_or_an_unknown_one_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert words in line and "capacity" in line


def test_the_entry_point_as_a_command_exits_with_the_benchs_code():
    import subprocess
    import sys

    from labs.settings import ROOT

    r = subprocess.run([sys.executable, "-m", "labs.bench", "capacity", "--rates", "400,200"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert one_line(r.stderr) == "bench-capacity: bad rates '400,200': increasing numbers in 1..100000"


@pytest.mark.parametrize("runs", ["0", "-1"])
@pytest.mark.parametrize("name", sorted(BENCHES))
def test_no_runs_or_fewer_is_one_line_and_exit_2_before_anything_starts(name, runs, nothing_starts, capsys):
    assert main([name, "--runs", runs]) == 2
    assert "runs" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, words", [
    (["lifecycle", "--runs", "five"], "'five' is not a whole number"),
    (["faults", "no-such-scenario"], "no-such-scenario"),
    (["signals", "--loud"], "unrecognized arguments: --loud"),
    (["capacity", "--ceiling", "50"], "bad ceiling 50"),
    (["replicas", "--variants", "go"], "bad variant 'go'"),
    (["replicas", "--variants", "python/reader=fast"], "bad option 'reader=fast'"),
    (["connections", "--via", "pigeon"], "--via 'pigeon'"),
    (["partitioning", "--setups", "redis-pubsub"], "give broker:balance"),
    (["storm", "--settings", "socket.io"], "--settings 'socket.io': give a preset"),
    (["storm", "--trigger", "kill-redis"], "--trigger 'kill-redis'"),
    (["storm", "--balancer", "apache"], "--balancer 'apache': give one of nginx"),
    (["storm", "--target", "app-9"], "--target 'app-9'"),
    (["storm", "--connections", "60000"], "needs 4 replicas; this bench runs 3"),
])
def test_bad_input_to_each_bench_is_one_line_and_exit_2_before_anything_starts(argv, words, nothing_starts, capsys):
    assert main(argv) == 2
    assert words in one_line(capsys.readouterr().err)


def test_a_bench_that_ran_says_whether_it_met_its_floor_with_0_or_1():
    assert run_bench("bench-x", lambda: 0) == 0
    assert run_bench("bench-x", lambda: 1) == 1


def raising(exc: BaseException):
    def main() -> int:
        raise exc
    return main


@pytest.mark.parametrize("exc, code, line", [
    (LabError("no Docker engine answers"), 2, "bench-x: no Docker engine answers"),
    (RunFailed("run 2 of 3 failed"), 1, "bench-x: run 2 of 3 failed"),
    (KeyboardInterrupt(), 130, "bench-x: interrupted by SIGINT"),
])
def test_one_exit_code_rule_for_every_bench(exc, code, line, capsys):
    assert run_bench("bench-x", raising(exc)) == code
    assert one_line(capsys.readouterr().err) == line


def test_a_crash_of_a_bench_is_one_line_exit_3_and_a_log_with_the_traceback(capsys):
    assert run_bench("bench-x", raising(RuntimeError("a bug in the bench"))) == 3
    line = one_line(capsys.readouterr().err)
    assert line.startswith("bench-x: internal error RuntimeError: a bug in the bench (traceback in ")
    log = line.rsplit("traceback in ", 1)[1].rstrip(")")
    assert "Traceback" in open(log).read()


def fake_engine(monkeypatch, closed: list[bool]):
    client = SimpleNamespace(close=lambda: closed.append(True), version=lambda: {"Version": "27.0"})
    monkeypatch.setattr(engine, "ensure_engine", lambda **kw: client)
    monkeypatch.setattr(images, "ensure_images", lambda client, **kw: "the images")
    return client


def test_a_setup_problem_is_exit_2_and_a_problem_once_under_way_is_a_failed_run_exit_1(monkeypatch, tmp_path,
                                                                                    capsys):
    closed: list[bool] = []
    fake_engine(monkeypatch, closed)

    def under_way() -> int:
        with started("x"):
            raise StackError("app-2 not ready after 30.0s")

    assert run_bench("bench-x", under_way) == 1 and closed == [True]
    assert one_line(capsys.readouterr().err) == "bench-x: app-2 not ready after 30.0s"

    def no_images(client, **kw):
        raise EngineError("no Docker engine answers")

    monkeypatch.setattr(images, "ensure_images", no_images)

    def setup() -> int:
        with started("x"):
            raise AssertionError("the body ran without images")

    assert run_bench("bench-x", setup) == 2 and closed == [True, True]
    assert one_line(capsys.readouterr().err) == "bench-x: no Docker engine answers"


def test_a_bench_writes_under_results_bench_by_its_name_and_stamp(monkeypatch, tmp_path):
    from labs import settings

    monkeypatch.setattr(settings, "RESULTS_DIR", tmp_path)
    closed: list[bool] = []
    fake_engine(monkeypatch, closed)
    with started("capacity") as bench:
        folder, file = bench.folder(), bench.file(".json")
        machine = bench.machine()
    assert folder == tmp_path / "bench" / f"capacity-{bench.stamp}" and folder.is_dir()
    assert file == tmp_path / "bench" / f"capacity-{bench.stamp}.json" and file.parent.is_dir()
    assert machine["docker"] == "27.0" and bench.images == "the images" and closed == [True]


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

    from labs import signals

    closed: list[bool] = []
    fake_engine(monkeypatch, closed)

    def sigterm_while_looking_up_images(client, **kw):
        assert signal.getsignal(signal.SIGTERM) is signals._handler, "bench-lifecycle installed no signal handler"
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the bench")

    monkeypatch.setattr(images, "ensure_images", sigterm_while_looking_up_images)
    assert main(["lifecycle", "--runs", "1"]) == 130 and closed == [True]
    assert one_line(capsys.readouterr().err) == "bench-lifecycle: interrupted by SIGTERM"


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
