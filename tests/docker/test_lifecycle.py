"""Every exit path removes what the run created; bad setups get one line and exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs import scenario
from labs.errors import StackError
from labs.infra.stack import Stack, StackSpec
from labs.settings import ROOT
from labs.spec import render

from .conftest import lab_resources


def lab(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The lab as a terminal runs it: its own process group, SIGINT at its default (a background job of a
    non-interactive shell, such as a CI runner, would otherwise inherit SIGINT ignored)."""
    return subprocess.Popen([sys.executable, "-m", "labs", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "CI": "true", **(env or {})}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_containers(client, proc: subprocess.Popen[str], count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(lab_resources(client)[0]) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"fewer than {count} containers after {timeout}s"
        time.sleep(0.05)


def test_a_config_nginx_rejects_stops_the_run_with_nginx_own_error(tmp_path: Path, images, nothing_left):
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "nginx.conf.j2").write_text("events {}\nhttp { server { listen 8080; bogus_directive on; } }\n")
    proc = lab("run", "no-broker", "--templates", str(tmp_path), "--results", str(tmp_path / "results"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "nginx rejected the rendered config" in err and 'unknown directive "bogus_directive"' in err
    assert not (tmp_path / "results").exists()


def test_a_taken_port_is_one_line_and_exit_2(images, nothing_left):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = lab("run", "no-broker", "--port", str(port))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip() == f"wslab: port 127.0.0.1:{port} is taken; pass another --port or leave it out"


def test_no_engine_answering_is_one_line_and_exit_2(tmp_path: Path):
    proc = lab("run", "no-broker", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "no Docker engine answers" in err


def test_make_clean_removes_what_a_killed_run_left(client, images, nothing_left):
    proc = lab("run", "pubsub")
    wait_for_containers(client, proc, 3)
    proc.kill()
    proc.communicate(timeout=30)
    assert lab_resources(client)[1], "a SIGKILLed run should have left its network"
    clean = subprocess.run([sys.executable, "-m", "labs", "clean"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert clean.returncode == 0 and "removed" in clean.stdout
    assert lab_resources(client) == ([], [])


def test_an_app_replica_exits_cleanly_on_sigterm(client, images, nothing_left):
    spec = StackSpec(run_id="sigterm0", replicas=1, broker="none",
                     balancer_conf=render(scenario.parse(
                         "[topology]\nreplicas = 1\n[workload]\n[expect]\nlost = 0\n", name="one")),
                     images=images)
    with Stack(client, spec) as stack:
        app = stack.containers["app-1"]
        app.stop(timeout=10)
        app.reload()
        # Without a SIGTERM handler Docker would SIGKILL it after 10 s: exit code 137.
        assert app.attrs["State"]["ExitCode"] == 0
        assert "stopping on signal" in app.logs().decode()


def test_a_readiness_failure_tears_down_what_started(client, images, nothing_left):
    spec = StackSpec(run_id="broken00", replicas=1, broker="none", images=images,
                     balancer_conf="events {}\nhttp { upstream app { server app-9:8000; } }\n")
    with pytest.raises(StackError, match="nginx"):
        with Stack(client, spec):
            pass


def test_a_teardown_waits_for_an_exec_in_flight_instead_of_pausing_under_it(client, images, nothing_left):
    """Docker 20.10 wedges a container paused with an exec in flight (an interrupted probe's redis-cli):
    the teardown lets the exec end before it pauses, so the exec finishes whole and nothing is left."""
    import threading

    spec = StackSpec(run_id="execwait", replicas=1, broker="redis-pubsub",
                     balancer_conf=render(scenario.parse(
                         "[topology]\nreplicas = 1\nbroker = \"redis-pubsub\"\n[workload]\n[expect]\nlost = 0\n",
                         name="one")), images=images)
    result: list[tuple[int, bytes]] = []
    with Stack(client, spec) as stack:
        redis = stack.containers["redis"]
        probe = threading.Thread(target=lambda: result.append(redis.exec_run(["sh", "-c", "sleep 1; echo done"])))
        probe.start()
        deadline = time.monotonic() + 10
        while not redis.client.api.inspect_container(redis.id).get("ExecIDs") and time.monotonic() < deadline:
            time.sleep(0.01)
    probe.join(timeout=30)
    assert result == [(0, b"done\n")]
