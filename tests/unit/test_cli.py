"""Bad input is refused before anything starts: one line on stderr, exit 2."""

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
