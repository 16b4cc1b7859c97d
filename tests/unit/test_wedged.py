"""A container the engine wedged (every call on it hangs until dockerd restarts): the call times out, and
one line names the container and how to clear it; the rest of the stack is removed all the same."""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace

import docker
import docker.errors
import pytest
import requests

from labs.errors import EngineError
from labs.infra.engine import no_answer
from labs.infra.stack import Stack, StackSpec, remove_leftovers


@pytest.fixture
def silent_engine(tmp_path):
    """A Docker socket that accepts every connection and never answers."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"unix://{path}"
    server.close()
    for conn in held:
        conn.close()
    os.unlink(path)


def test_a_call_the_engine_never_answers_names_the_container_and_the_way_out(silent_engine):
    api = docker.APIClient(base_url=silent_engine, version="1.41", timeout=0.3)
    with pytest.raises(requests.exceptions.Timeout) as caught:
        api.inspect_container("wslab-r1-redis")
    said = str(no_answer(caught.value))
    assert said.startswith("container wslab-r1-redis is wedged: the Docker engine does not answer calls on it")
    assert "`docker unpause wslab-r1-redis`" in said and "restart dockerd" in said and "\n" not in said
    assert no_answer(ValueError("a bug")) is None


def test_a_wedged_container_stops_the_cli_with_one_line_exit_2(monkeypatch, capsys):
    from labs import scenario

    from .test_cli import main_keeping_signals

    def hang() -> list[str]:
        url = f"http+docker://localhost/v1.41/containers/{'a' * 64}/json"
        raise requests.exceptions.ReadTimeout("Read timed out.", request=SimpleNamespace(method="GET", url=url))

    monkeypatch.setattr(scenario, "available", hang)
    assert main_keeping_signals(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wslab: container {'a' * 12} is wedged") and err.count("\n") == 1


class Fake:
    """A container or network handle; a wedged one times out on every call, as a hung engine call does."""

    def __init__(self, name: str, *, wedged: bool = False, members: tuple[str, ...] = ()) -> None:
        self.id, self.name, self.wedged, self.calls = name * 4, name, wedged, []
        self.attrs = {"Names": [f"/{name}"], "ExecIDs": [], "Containers": {m * 4: {} for m in members}}
        self.client = SimpleNamespace(api=SimpleNamespace(exec_inspect=lambda e: {}))

    def __getattr__(self, method: str):  # reload, pause, remove, disconnect, unpause, kill
        def call(*args, **kwargs):
            if self.wedged:
                raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=60)")
            self.calls.append(method)
        return call


def engine(containers: list[Fake], networks: list[Fake]):  # type: ignore[no-untyped-def]
    return SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: containers),
                           networks=SimpleNamespace(list=lambda **kw: networks))


def test_the_teardown_removes_everything_but_a_wedged_container_and_names_it():
    redis, app = Fake("wslab-r1-redis", wedged=True), Fake("wslab-r1-app-1")
    back, front = Fake("wslab-r1-back", members=("wslab-r1-redis", "wslab-r1-app-1")), Fake("wslab-r1-front")
    spec = StackSpec(run_id="r1", replicas=1, broker="redis-pubsub", balancer_conf="", images=None)  # type: ignore[arg-type]
    stack = Stack(engine([], []), spec)  # type: ignore[arg-type]
    stack.containers, stack.networks = {"redis": redis, "app-1": app}, {"back": back, "front": front}
    with pytest.raises(EngineError, match=r"^container wslab-r1-redis is wedged: .*`docker unpause wslab-r1-redis`"):
        stack._remove_all()
    stack._release()
    assert app.calls == ["reload", "pause", "remove"] and "remove" in front.calls
    assert back.calls.count("disconnect") == 1  # app-1 left it; redis, wedged, was not asked
    assert "wslab-r1-redis" not in stack.removed and "wslab-r1-app-1" in stack.removed


def test_clean_removes_the_rest_and_names_the_wedged_container():
    redis, app, net = Fake("wslab-r1-redis", wedged=True), Fake("wslab-r1-app-1"), Fake("wslab-r1-back")
    with pytest.raises(EngineError, match=r"^container wslab-r1-redis is wedged") as caught:
        remove_leftovers(engine([redis, app], [net]))  # type: ignore[arg-type]
    assert app.calls == ["remove"] and net.calls == ["remove"] and "\n" not in str(caught.value)
