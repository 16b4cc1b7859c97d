"""The engine seam without Docker: one readiness loop for both engines, `open_stack` choosing the engine from
the scenario (`run`, `up`, the benches), both stacks carrying what the harness reads, node faults refused on
one engine."""

from __future__ import annotations

import argparse
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from labs import scenario
from labs.errors import LabError, StackError, SwarmError
from labs.infra import engine, launch
from labs.infra.operations import Operations
from labs.infra.readiness import wait_ready
from labs.infra.running import RunningStack
from labs.infra.stack import Stack, StackSpec
from labs.infra.swarm import nodes
from labs.infra.swarm import stack as swarm_stack
from labs.infra.swarm.operations import SwarmOperations
from labs.infra.swarm.stack import SwarmStack
from labs.live import commands

IMAGES: Any = SimpleNamespace(app=SimpleNamespace(tag="a"), redis=SimpleNamespace(tag="r"),
                              nginx=SimpleNamespace(tag="n"))
SPEC = StackSpec(run_id="t1", replicas=3, broker="redis-pubsub", balancer_conf="", images=IMAGES)
LOCAL = nodes.Swarm("o", "10.251.7.254", tuple(nodes.Node(f"node-{i}", f"10.251.7.{i}", f"/s/node-{i}.sock")
                                               for i in (1, 2, 3)))


def test_a_probe_that_answers_after_transient_errors_is_ready() -> None:
    answers = iter([ConnectionRefusedError(), TimeoutError(), False, True])

    def probe() -> bool:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    wait_ready("app-1", probe, timeout=5.0, where="127.0.0.1:1", stopping=threading.Event(), interval=0.0)


def test_a_probe_error_that_is_not_transient_goes_up_at_once() -> None:
    def probe() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_ready("app-1", probe, timeout=5.0, where="127.0.0.1:1", stopping=threading.Event())


def test_at_the_deadline_the_message_says_what_where_how_long_with_the_logs() -> None:
    with pytest.raises(StackError) as info:
        wait_ready("app-3", lambda: False, timeout=0.05, where="10.251.7.1:8080 on node-3",
                   stopping=threading.Event(), logs=lambda: "listening on 8000", interval=0.01)
    assert str(info.value) == "app-3 not ready after 0.1s (10.251.7.1:8080 on node-3):\nlistening on 8000"


def test_a_thing_gone_fails_at_once_and_a_teardown_stops_the_wait() -> None:
    with pytest.raises(StackError, match="^redis exited with code 1"):
        wait_ready("redis", lambda: False, timeout=60.0, where="-", stopping=threading.Event(),
                   gone=lambda: "exited with code 1 before it was ready", interval=0.0)
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(StackError, match="being removed"):
        wait_ready("nginx", lambda: False, timeout=60.0, where="-", stopping=stopping)


def members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_") or n in {"__enter__", "__exit__"}}
    names |= set(getattr(protocol, "__annotations__", {}))
    for base in protocol.__mro__[1:]:
        if base.__module__ == protocol.__module__:
            names |= members(base)
    return names


def test_both_stacks_carry_every_member_of_the_running_stack() -> None:
    one = Stack(None, SPEC)
    swarm = SwarmStack(None, SPEC, nodes.Swarm("o", "", ()), {})
    for stack in (one, swarm):
        missing = {n for n in members(RunningStack) if not hasattr(stack, n)}
        assert not missing, f"{type(stack).__name__} lacks {missing}"
    assert one.events == [] and one.node_of() == {} and not one.stopping
    assert type(one.operations()) is Operations and type(swarm.operations()) is SwarmOperations


def test_a_node_fault_on_one_engine_is_refused_in_one_line() -> None:
    with pytest.raises(StackError) as info:
        Stack(None, SPEC).operations().kill_node("node-3")
    assert str(info.value) == "kill-node node-3 needs a Swarm ([swarm] table): this stack runs on one engine"


def test_without_a_swarm_table_the_stack_runs_on_one_engine() -> None:
    assert type(launch.open_stack(None, SPEC)) is Stack
    assert type(launch.open_stack(None, SPEC, scenario=scenario.load("pubsub"))) is Stack


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Swarm's engines replaced: what was asked of them is recorded, nothing is reached."""
    asked: list[str] = []
    monkeypatch.setattr(nodes, "require", lambda count: asked.append(f"require {count}") or LOCAL)
    monkeypatch.setattr(nodes, "ensure_images", lambda swarm, tags, client, progress: asked.append(
        f"images {sorted(tags)}"))
    monkeypatch.setattr(nodes, "node_client", lambda node: f"client of {node.name}")
    monkeypatch.setattr(swarm_stack, "node_client", lambda node: f"client of {node.name}")
    return asked


def test_a_swarm_table_opens_a_swarm_stack_on_the_recorded_swarm(no_engines: list[str]) -> None:
    stack = launch.open_stack(None, SPEC, scenario=scenario.load("swarm-pubsub"))
    assert isinstance(stack, SwarmStack)
    assert stack.client == "client of node-1" and stack.swarm == LOCAL and stack.spread == 3
    assert stack.pinned == {"nginx": "node-1", "redis": "node-1"}
    assert no_engines == ["require 3", "images ['a', 'n', 'r']"]


def test_a_node_kill_on_a_swarm_the_lab_did_not_build_is_refused_first(no_engines: list[str]) -> None:
    real = nodes.Swarm("o", "", LOCAL.nodes, remote=True)
    with pytest.raises(SwarmError, match="kill-node needs the local Swarm"):
        launch.open_stack(None, SPEC, scenario=scenario.load("swarm-node-loss-streams"), on=real)
    assert no_engines == []


class Opened(Exception):
    """Raised by the recording open_stack: `up` got as far as opening its stack."""


def test_up_on_a_swarm_scenario_opens_its_stack_on_the_swarm(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Any) -> None:
    from labs import spec
    from labs.live import state

    monkeypatch.setattr(state, "LIVE_DIR", tmp_path)
    monkeypatch.setattr(spec, "stack_spec", lambda client, p, images, host_port=None: (SPEC, ""))
    opened: list[Any] = []

    def recording(client: Any, stack_spec: StackSpec, **kwargs: Any) -> Any:
        opened.append(kwargs["scenario"])
        raise Opened

    monkeypatch.setattr(commands, "open_stack", recording)
    client = SimpleNamespace(close=lambda: None)
    args = argparse.Namespace(name="seam", port=None, scenario="swarm-pubsub")
    with pytest.raises(Opened):
        commands.up(args, setup=lambda progress: (client, IMAGES), progress=lambda line: None,
                    on_removed=lambda names: None)
    assert [s.swarm for s in opened] == [scenario.load("swarm-pubsub").swarm] and opened[0].swarm.nodes == 3
    assert state.read("seam") is None  # released on the way out


def test_fault_and_heal_on_a_stack_up_on_a_swarm_say_why_not() -> None:
    live = commands.LiveState(name="s", scenario="swarm-pubsub", pid=1, pid_start="1", replicas=3,
                              broker="redis-pubsub", app="websocket", run_id="r", port=8080, host="10.251.7.1")
    with pytest.raises(LabError, match="runs on a Swarm"):
        commands._one_engine(live)
    assert live.url("/x") == "http://10.251.7.1:8080/x"


@pytest.mark.parametrize(("cmdline", "daemon_json", "proxied"), [
    (["dockerd"], {}, True),
    (["dockerd", "--userland-proxy=false"], {}, False),
    (["/usr/sbin/dockerd", "-H", "fd://", "--userland-proxy=true"], {"userland-proxy": False}, True),
    (["dockerd"], {"userland-proxy": False}, False),
    (["dockerd"], {"userland-proxy": "false"}, True),
    (["dockerd", "--userland-proxy=false", "--userland-proxy=true"], {}, True),
])
def test_the_userland_proxy_follows_the_flag_then_daemon_json(
        cmdline: list[str], daemon_json: dict[str, object], proxied: bool) -> None:
    assert engine.userland_proxy_flag(cmdline, daemon_json) is proxied


def test_the_lab_starts_dockerd_without_its_userland_proxy() -> None:
    assert engine.userland_proxy_flag(list(engine.DOCKERD), {}) is False
