"""`up` keeps a stack running until `down`; `fault` and `heal` act on it from other processes, `scale`,
`deploy` and `reload` change its topology; nothing with the run's label is left after `down`, SIGTERM, or a
crash of the live view."""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack

import docker
import pytest
import websockets.exceptions
import websockets.sync.client

from labs.infra.stack import http_get, remove_leftovers
from labs.live import commands, state, view
from labs.settings import LABEL, OWNER, OWNER_LABEL

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


# -- topology changes on the live stack -----------------------------------------------------------------

def chat_user(sockets: ExitStack, port: int, client: str) -> tuple[websockets.sync.client.ClientConnection, str]:
    """A chat user in room lobby, through nginx (closed with `sockets`): the connection and its replica."""
    ws = sockets.enter_context(websockets.sync.client.connect(
        f"ws://127.0.0.1:{port}/ws?room=lobby&client={client}", open_timeout=10))
    welcome = json.loads(ws.recv(timeout=10))
    assert welcome["type"] == "welcome"
    return ws, str(welcome["replica"])


def landed(sockets: ExitStack, port: int, count: int) -> set[str]:
    """The replicas `count` connections landed on, one after the other (each closed once it has)."""
    found = set()
    for i in range(count):
        ws, replica = chat_user(sockets, port, f"probe-{i}")
        ws.close()
        found.add(replica)
    return found


def users_on_two_replicas(sockets: ExitStack, port: int, tag: str
                          ) -> list[tuple[websockets.sync.client.ClientConnection, str]]:
    """Two users on different replicas (round-robin: the next connection goes to the next replica)."""
    users = [chat_user(sockets, port, f"{tag}-0")]
    for i in range(1, 8):
        ws, replica = chat_user(sockets, port, f"{tag}-{i}")
        if replica != users[0][1]:
            return [users[0], (ws, replica)]
        ws.close()
    raise AssertionError("eight connections through round-robin all landed on one replica")


def delivered(sender: websockets.sync.client.ClientConnection, receiver: websockets.sync.client.ClientConnection,
              body: str) -> dict[str, object]:
    """`body` sent by one user reaches the other (the frame it receives, within 10 s)."""
    sender.send(json.dumps({"id": body, "ts": time.time(), "body": body}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = json.loads(receiver.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == "msg" and frame.get("body") == body:
            return dict(frame)
    raise AssertionError(f"{body!r} not delivered within 10s")


def closed_by(ws: websockets.sync.client.ClientConnection) -> int | None:
    """The close code the server sent, once the frames before it are read (None: no close frame)."""
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


def change(name: str, *argv: str) -> str:
    done = lab(*argv, "--name", name)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0 and err == "", (out, err)
    return out


def test_scale_deploy_reload_on_the_live_stack_and_chat_across_replicas_throughout(client, images, name):
    proc = lab("up", "pubsub", "--name", name)
    sockets = ExitStack()
    try:
        live = wait_until_up(proc, name)
        (a, on_a), (b, on_b) = users_on_two_replicas(sockets, live.port, "before")
        assert delivered(a, b, "hello-before")["origin"] == on_a

        out = change(name, "scale", "4")
        assert out.splitlines()[-1].startswith("scale to 4: added app-4 in ")
        after = state.read(name)
        assert after is not None and after.replica_names == ("app-1", "app-2", "app-3", "app-4") and after.change == ""
        app4 = client.containers.get(f"wslab-{live.run_id}-app-4")
        assert app4.status == "running" and app4.labels[LABEL] == live.run_id
        assert app4.labels[OWNER_LABEL] == OWNER and app4.attrs["Config"]["User"] == "65534:65534"
        assert landed(sockets, live.port, 12) == {"app-1", "app-2", "app-3", "app-4"}  # app-4 is in the upstream

        out = change(name, "deploy", "--max-unavailable", "2", "--settle", "0")  # these users do not come back
        last = out.splitlines()[-1]
        assert last.startswith("deploy: 4 replica(s) replaced in ") and "2 at a time, SIGTERM" in last, out
        assert "; 2 connection(s) dropped; 0 of 2 back within 0s" in last  # the two users, closed by their replicas
        assert [line.split()[0] for line in out.splitlines()[:-1]] == ["app-1", "app-2", "app-3", "app-4"]
        assert closed_by(a) == 1001  # going away: its replica stopped gracefully
        (a, on_a), (b, on_b) = users_on_two_replicas(sockets, live.port, "after-deploy")
        assert delivered(b, a, "hello-after-deploy")["origin"] == on_b

        out = change(name, "reload")
        assert out.startswith("nginx reloaded in ") and "hold their connections" in out
        assert delivered(a, b, "hello-across-reload")["origin"] == on_a  # the same sockets: not cut

        assert proc.poll() is None, "the live view died during the changes"
        down = lab("down", "--name", name)
        out, err = down.communicate(timeout=120)
        assert down.returncode == 0, err
        assert proc.wait(timeout=30) == 130
        assert labelled(client, live.run_id) == (0, 0)
    finally:
        sockets.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
