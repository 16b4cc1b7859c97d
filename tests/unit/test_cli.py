"""Bad input is refused before anything starts: one line on stderr, exit 2. A failure during a run is
exit 1, after the table of the runs that completed."""

import os
import subprocess
import sys

from labs.settings import ROOT


def lab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labs", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_an_unknown_scenario_is_one_line_and_exit_2():
    r = lab("run", "no-such-scenario")
    assert r.returncode == 2
    assert one_line(r.stderr).startswith("wslab: unknown scenario 'no-such-scenario' (known: ")


def test_a_malformed_scenario_file_names_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[topology]\nreplicas = 33\n[workload]\n[expect]\nlost = 0\n")
    r = lab("run", str(bad))
    assert r.returncode == 2
    assert "replicas must be between 1 and 32, got 33" in one_line(r.stderr)


def test_a_bad_port_is_refused_before_setup():
    r = lab("run", "pubsub", "--port", "80")
    assert r.returncode == 2 and "--port 80" in one_line(r.stderr)


def test_every_command_has_help():
    for args in ([], ["run"], ["list"], ["clean"], ["images"]):
        r = lab(*args, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_list_shows_each_scenario_with_its_expectation():
    r = lab("list")
    assert r.returncode == 0
    assert "no-broker" in r.stdout and "cross_server_ratio = 0" in r.stdout
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()}
    assert rows["pubsub"][3] == "nginx" and rows["pubsub-haproxy"][3] == "haproxy"


def test_a_crash_of_the_lab_is_one_line_exit_3_and_a_log_with_the_traceback(monkeypatch, capsys):
    from labs import cli

    def broken(args):
        raise RuntimeError("a bug in the lab")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 3
    line = one_line(capsys.readouterr().err)
    assert line.startswith("wslab: internal error RuntimeError: a bug in the lab (traceback in ")
    log = line.rsplit("traceback in ", 1)[1].rstrip(")")
    assert "Traceback" in open(log).read() and "a bug in the lab" in open(log).read()


def test_results_naming_a_file_is_refused_before_anything_starts(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("")
    r = lab("run", "pubsub", "--results", str(target))
    assert r.returncode == 2
    assert one_line(r.stderr) == f"wslab: --results {target} is a file, not a directory; give a directory"


def test_templates_naming_a_missing_folder_is_refused_before_anything_starts(tmp_path):
    r = lab("run", "pubsub", "--templates", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "--templates" in one_line(r.stderr) and "no nginx/ directory" in r.stderr


def test_a_template_that_does_not_render_is_refused_before_anything_starts(tmp_path):
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "nginx.conf.j2").write_text("{{ no_such_value }}\n")
    r = lab("run", "pubsub", "--templates", str(tmp_path), env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.returncode == 2 and "nginx template error" in one_line(r.stderr)



def main_keeping_signals(argv):
    """`cli.main` in this process, with pytest's signal handlers put back afterwards."""
    import signal

    from labs import cli

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return cli.main(argv)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def scenario_files(tmp_path, *names):
    """Scenario files that expect nothing lost."""
    for name in names:
        (tmp_path / f"{name}.toml").write_text("[topology]\n[workload]\n[expect]\nlost = 0\n")
    return [str(tmp_path / f"{name}.toml") for name in names]


def passing_result(p):
    from labs.accounting.checker import account
    from labs.accounting.history import History
    from labs.accounting.verdict import judge, measures
    from labs.report.result import RunResult

    h = History(replicas=["app-1"])
    acc = account(h)
    values = measures(acc)
    return RunResult(scenario=p.scenario, protocol=p.protocol, run_id="r", stamp="s", history=h, accounting=acc,
                     values=values, verdict=judge(values, p.scenario.expect), balancer_conf="")


def test_a_stack_error_during_the_second_run_prints_the_first_runs_table_names_the_failure_and_exits_1(
        monkeypatch, tmp_path, capsys):
    from types import SimpleNamespace

    from labs import cli, runner
    from labs.errors import RunFailed
    from labs.report import files

    def execute(client, p, images, **kw):
        if p.scenario.name == "second":
            raise RunFailed("app-2 did not come back after the heal of kill-replica")
        return passing_result(p)

    closed = []
    image = SimpleNamespace(tag="t", source="s")
    images = SimpleNamespace(app=image, redis=image, nginx=image)
    monkeypatch.setattr(cli, "_setup", lambda progress: (SimpleNamespace(close=lambda: closed.append(1)), images))
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(files, "write", lambda result, results_dir, text: tmp_path)
    argv = ["--quiet", "run", *scenario_files(tmp_path, "first", "second", "third"), "--results", str(tmp_path)]
    assert main_keeping_signals(argv) == 1 and closed == [1]
    out, err = capsys.readouterr()
    assert "| first " in out and "| second " not in out
    assert one_line(err) == ("wslab: second failed during its run: app-2 did not come back after the heal of "
                             "kill-replica; not run: third")


def test_runs_as_declared_print_one_table_write_each_run_and_exit_0(monkeypatch, tmp_path, capsys):
    """What `labs run A B` does with the pipeline's results (tests/docker runs the pipeline itself): each
    run written to --results, one table of them all on stdout, exit 0."""
    from types import SimpleNamespace

    from labs import cli, runner
    from labs.report import files

    written = []
    image = SimpleNamespace(tag="t", source="s")
    images = SimpleNamespace(app=image, redis=image, nginx=image)
    monkeypatch.setattr(cli, "_setup", lambda progress: (SimpleNamespace(close=lambda: None), images))
    monkeypatch.setattr(runner, "execute", lambda client, p, images, **kw: passing_result(p))
    monkeypatch.setattr(files, "write", lambda result, results_dir, text: written.append(
        (result.scenario.name, results_dir, f"| {result.scenario.name} " in text)) or tmp_path)
    argv = ["--quiet", "run", *scenario_files(tmp_path, "first", "second"), "--results", str(tmp_path / "out")]
    assert main_keeping_signals(argv) == 0
    assert written == [("first", tmp_path / "out", True), ("second", tmp_path / "out", True)]
    out = capsys.readouterr().out
    assert "| first " in out and "| second " in out


def test_a_setup_problem_before_any_run_is_still_exit_2(monkeypatch, tmp_path, capsys):
    from labs import cli
    from labs.errors import EngineError

    def no_engine(progress):
        raise EngineError("no Docker engine answers")

    monkeypatch.setattr(cli, "_setup", no_engine)
    assert main_keeping_signals(["--quiet", "run", *scenario_files(tmp_path, "s"), "--results", str(tmp_path)]) == 2
    assert one_line(capsys.readouterr().err) == "wslab: no Docker engine answers"


def test_a_stack_that_would_not_start_is_a_setup_problem_exit_2(monkeypatch, tmp_path, capsys):
    """nginx rejecting its config or a taken port surface while the stack starts: exit 2, one line."""
    from types import SimpleNamespace

    from labs import cli, runner
    from labs.errors import StackError

    def execute(client, p, images, **kw):
        raise StackError("port 127.0.0.1:8080 is taken; pass another --port or leave it out")

    image = SimpleNamespace(tag="t", source="s")
    images = SimpleNamespace(app=image, redis=image, nginx=image)
    monkeypatch.setattr(cli, "_setup", lambda progress: (SimpleNamespace(close=lambda: None), images))
    monkeypatch.setattr(runner, "execute", execute)
    assert main_keeping_signals(["--quiet", "run", *scenario_files(tmp_path, "s"), "--results", str(tmp_path)]) == 2
    assert one_line(capsys.readouterr().err) == "wslab: port 127.0.0.1:8080 is taken; pass another --port or leave it out"
