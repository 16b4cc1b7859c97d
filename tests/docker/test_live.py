"""`up` keeps a stack running until `down`; `fault` and `heal` act on it from other processes; nothing with
the run's label is left after `down`, SIGTERM, or a crash of the live view."""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Iterator

import docker
import pytest

from labs.infra.stack import http_get, remove_leftovers
from labs.live import commands, state, view
from labs.settings import LABEL

from .test_lifecycle import lab

READY_TIMEOUT_S = 120.0


def labelled(client: docker.DockerClient, run_id: str) -> tuple[int, int]:
    selector = {"label": f"{LABEL}={run_id}"}
    return (len(client.containers.list(all=True, filters=selector, sparse=True)),
            len(client.networks.list(filters=selector)))


def wait_until_up(proc, name: str) -> state.LiveState:  # type: ignore[no-untyped-def]
    """Poll the state file until `up` has recorded its port (the stack is ready then)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        live = state.read(name)
        if live is not None and live.ready:
            return live
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"`up` not ready after {READY_TIMEOUT_S:.0f}s"
        time.sleep(0.05)


def status(client: docker.DockerClient, run_id: str, role: str) -> str:
    return str(client.containers.get(f"wslab-{run_id}-{role}").status)


def healthy_through_nginx(port: int, replica: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(port, f"/_lab/{replica}/healthz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture
def name() -> Iterator[str]:
    """A stack name of this test's own, and whatever it left removed afterwards."""
    name = f"test-{int(time.time() * 1000) % 10**9}"
    yield name
    live = state.read(name)
    if live is not None:
        client = docker.from_env()
        if live.run_id:
            remove_leftovers(client, live.run_id)
        client.close()
        state.forget(name)


def test_up_fault_heal_down_and_nothing_left(client, images, name):
    proc = lab("up", "pubsub", "--name", name)
    try:
        live = wait_until_up(proc, name)
        page = http_get(live.port, "/")
        assert page[0] == 200 and b"wslab chat" in page[1]

        again = lab("up", "no-broker", "--name", name)
        out, err = again.communicate(timeout=60)
        assert again.returncode == 2 and err.startswith(f"wslab: stack '{name}' (pubsub, run {live.run_id}) is "
                                                        f"already up") and err.count("\n") == 1

        done = lab("fault", "kill-replica", "app-2", "--name", name)
        assert done.communicate(timeout=60)[1] == "" and done.returncode == 0
        assert status(client, live.run_id, "app-2") == "exited"
        done = lab("fault", "pause-redis", "redis", "--name", name)
        done.communicate(timeout=60)
        assert done.returncode == 0 and status(client, live.run_id, "redis") == "paused"
        assert [f.kind for f in state.read(name).faults] == ["kill-replica", "pause-redis"]

        twice = lab("fault", "partition-replica", "app-2", "--name", name)
        out, err = twice.communicate(timeout=60)
        assert twice.returncode == 2 and "app-2 already has kill-replica applied" in err

        healed = lab("heal", "--name", name)
        out, err = healed.communicate(timeout=60)
        assert healed.returncode == 0, err
        assert out.splitlines() == ["healed pause-redis on redis", "healed kill-replica on app-2"]
        assert status(client, live.run_id, "redis") == "running"
        assert status(client, live.run_id, "app-2") == "running"
        assert healthy_through_nginx(live.port, "app-2")
        assert proc.poll() is None, "the live view died during the faults"

        down = lab("down", "--name", name)
        out, err = down.communicate(timeout=120)
        assert down.returncode == 0, err
        assert out.endswith("0 container(s) and 0 network(s) with its label remain\n")
        assert proc.wait(timeout=30) == 130  # stopped by down's SIGTERM, after removing its stack
        assert labelled(client, live.run_id) == (0, 0)
        assert state.read(name) is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_sigterm_to_up_removes_the_stack_and_its_state(client, images, name):
    proc = lab("up", "no-broker", "--name", name)
    live = wait_until_up(proc, name)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert labelled(client, live.run_id) == (0, 0)
    assert state.read(name) is None


def test_a_crash_of_the_live_view_still_removes_the_stack(client, images, name, monkeypatch):
    def crash(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("the view broke")

    monkeypatch.setattr(view, "poll", crash)
    args = argparse.Namespace(scenario="no-broker", name=name, port=None)
    own = docker.from_env()  # `up` closes the client it is given
    removed: list[str] = []
    with pytest.raises(RuntimeError, match="the view broke"):
        commands.up(args, setup=lambda progress: (own, images), progress=lambda line: None,
                    on_removed=removed.extend)
    run_ids = {n.split("-")[1] for n in removed}
    assert len(run_ids) == 1 and len(removed) == 5  # nginx, 3 replicas, the front network
    assert labelled(client, run_ids.pop()) == (0, 0)
    assert state.read(name) is None


def test_after_a_sigkill_of_up_a_second_up_is_refused_and_down_removes_by_label(client, images, name):
    proc = lab("up", "no-broker", "--name", name)
    live = wait_until_up(proc, name)
    proc.kill()
    proc.wait(timeout=30)
    assert labelled(client, live.run_id) != (0, 0)  # nothing could clean up
    again = lab("up", "no-broker", "--name", name)
    err = again.communicate(timeout=60)[1]
    assert again.returncode == 2 and f"its process {proc.pid} is gone; run `python -m labs down --name {name}`" in err
    down = lab("down", "--name", name)
    out, err = down.communicate(timeout=60)
    assert down.returncode == 0, err
    assert labelled(client, live.run_id) == (0, 0) and state.read(name) is None
