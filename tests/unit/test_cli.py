"""Bad input is refused before anything starts: one line on stderr, exit 2."""

import subprocess
import sys

from labs.settings import ROOT


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labs", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


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
