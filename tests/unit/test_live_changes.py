"""`scale`, `deploy`, `reload` on the live stack, their pure parts: the arguments and the stack refused in
one line (exit 2) before anything changes, the replicas a scale adds or removes, the state written after
each step, and a deploy that a signal stops between two steps, never inside one."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from labs import cli, scenario
from labs.errors import LabError
from labs.infra.faults import RollingRestart
from labs.live import changes, state, topology, view
from labs.live.changes import Change, Stopped
from labs.live.state import AppliedFault, LiveState
from labs.live.topology import Stepwise
from labs.scenario import ALL_REPLICAS, Fault, FaultKind
from labs.spec import shutdown_timeout_ms

ME = os.getpid()
IMAGES = {"app": "wslab/app:1", "redis": "wslab/base:2", "nginx": "wslab/base:2", "node": "", "nats": "wslab/base:2",
          "haproxy": ""}


@pytest.fixture(autouse=True)
def live_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "LIVE_DIR", tmp_path / "live")
    return tmp_path / "live"


def live(**changed: object) -> LiveState:
    base = LiveState(name="default", scenario="pubsub", pid=ME, pid_start=state.process_start(ME), replicas=3,
                     broker="redis-pubsub", app="websocket", run_id="3f289860", port=32772, source="pubsub",
                     owner="lab", images=IMAGES, highest=3)
    return LiveState(**{**base.__dict__, **changed})  # type: ignore[arg-type]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- arguments --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (("scale", "0"), "scale 0: give 1..32 replicas (a stack keeps at least one serving)"),
    (("scale", "33"), "scale 33: give 1..32 replicas (a stack keeps at least one serving)"),
    (("deploy", "--max-unavailable", "0"), "--max-unavailable 0: give 1..32 (replicas replaced at a time)"),
    (("deploy", "--pause", "-1"), "--pause -1: give 0..60 seconds between steps"),
    (("deploy", "--pause", "61"), "--pause 61: give 0..60 seconds between steps"),
    (("deploy", "--settle", "61"), "--settle 61: give 0..60 seconds to wait for the clients to come back"),
    (("reload", "--shutdown-timeout", "0"), "--shutdown-timeout 0: give 0.001..600 seconds"),
    (("scale", "4"), "nothing is up (no stack named 'default'); start one with `python -m labs up SCENARIO`"),
    (("deploy", "--name", "demo"), "nothing is up (no stack named 'demo'); start one with "
                                   "`python -m labs up SCENARIO --name demo`"),
])
def test_bad_arguments_and_no_stack_are_one_line_and_exit_2(capsys, argv, message) -> None:
    assert run_cli(capsys, *argv) == (2, "", f"wslab: {message}\n")


def test_graceful_and_kill_together_are_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["deploy", "--graceful", "--kill"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_deploy_takes_its_knobs() -> None:
    args = cli.parser().parse_args(["deploy", "--kill", "--max-unavailable", "2", "--pause", "1.5", "--name", "d"])
    assert (args.graceful, args.max_unavailable, args.pause, args.name) == (False, 2, 1.5, "d")
    assert cli.parser().parse_args(["deploy"]).graceful is True
    assert cli.parser().parse_args(["reload"]).shutdown_timeout is None


# -- the stack --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack, renders, message", [
    (live(port=0), False, "stack 'default' is still starting; run `deploy` again once `up` prints its URLs"),
    (live(host="10.0.9.2"), False, "stack 'default' runs on a Swarm (its balancer on 10.0.9.2:32772): `deploy` "
                                   "changes a stack on this engine; on a Swarm a rolling update is its own "
                                   "`docker service update`"),
    (live(source=""), False, "stack 'default' was started by an older `up` that recorded no scenario and images; "
                             "run `python -m labs down` and `up` again"),
    (live(pid=999_999_999, pid_start="1"), False,
     "stack 'default''s `up` (pid 999999999) is gone; run `python -m labs down`"),
    (live(owner="ci"), False, "stack 'default' was started with WSLAB_OWNER=ci and this command runs as lab: run "
                              "it with WSLAB_OWNER=ci, so that new containers carry the run's labels"),
    (live(balancer="haproxy"), True, "`deploy` writes nginx's worker_shutdown_timeout; stack 'default' runs haproxy, "
                                     "whose bound is [topology] hard_stop_after (`scale`, `deploy`, and `reload` "
                                     "without --shutdown-timeout, run on it)"),
    (live(faults=(AppliedFault("kill-replica", "app-2", 1.0),)), False,
     "stack 'default' has kill-replica on app-2 applied; run `python -m labs heal` first"),
])
def test_a_stack_a_change_cannot_act_on_is_refused_with_one_line(stack, renders, message) -> None:
    with pytest.raises(LabError) as info:
        changes.check_stack(stack, "deploy", renders=renders, owner="lab")
    assert str(info.value) == message


def test_a_ready_stack_of_this_owner_passes_and_haproxy_takes_what_renders_nothing() -> None:
    changes.check_stack(live(), "scale", renders=True, owner="lab")
    changes.check_stack(live(balancer="haproxy"), "deploy", renders=False, owner="lab")


def test_a_swarm_stack_is_refused_from_the_command_line_before_anything_changes(capsys) -> None:
    state.claim(live(host="10.0.9.2"))
    code, out, err = run_cli(capsys, "scale", "4")
    assert code == 2 and out == "" and err.startswith("wslab: stack 'default' runs on a Swarm") and err.count("\n") == 1
    assert state.read("default") == live(host="10.0.9.2")


# -- what a scale adds and removes -------------------------------------------------------------------------

def test_a_scale_out_names_the_next_replicas() -> None:
    assert changes.scaled(live(), 5) == (["app-4", "app-5"], [])


def test_a_scale_in_removes_the_newest_first() -> None:
    assert changes.scaled(live(serving=("app-1", "app-2", "app-4", "app-5"), highest=5), 2) == ([], ["app-5", "app-4"])


def test_numbers_are_never_reused_after_a_scale_in() -> None:
    after_scale_in = live(serving=("app-1", "app-2"), replicas=2, highest=3)
    assert changes.scaled(after_scale_in, 3) == (["app-4"], [])


def test_a_scale_to_what_serves_changes_nothing() -> None:
    assert changes.scaled(live(), 3) == ([], [])


def test_clients_back_after_a_deploy_are_counted_against_the_connections_before_it() -> None:
    now = {"app-1": 3, "app-2": 3, "app-3": None}
    assert topology.back_text(6, now, 1.24, 10.0) == "all 6 back 1.2s after the last was ready: 6 (app-1 3, app-2 3, app-3 -)"
    assert topology.back_text(8, now, None, 10.0) == ("6 of 8 back within 10s of the last being ready: "
                                                     "6 (app-1 3, app-2 3, app-3 -)")
    assert topology.back_text(0, {"app-1": 0}, 0.0, 10.0) == "no connection before it; now 0 (app-1 0)"
    assert changes.counted({"app-1": None}) == "- (app-1 -)"


# -- what the renderer and the state file keep -----------------------------------------------------------

def test_the_rendered_shutdown_timeout_is_the_one_given_and_other_faults_stay() -> None:
    s = scenario.load("fault-pubsub-slow-consumer")
    assert shutdown_timeout_ms(changes.rendering(s, 2.5)) == 2500
    assert shutdown_timeout_ms(changes.rendering(s, None)) is None
    assert [f for f in changes.rendering(s, 2.5).faults if not f.kind.reloads_lb] == list(s.faults)


def test_the_image_set_reads_back_from_the_state_file() -> None:
    images = changes.image_set(IMAGES)
    assert (images.app.tag, images.nginx.tag, images.node, images.haproxy) == ("wslab/app:1", "wslab/base:2", None, None)
    assert changes.images_of(images) == IMAGES


def test_a_state_without_images_is_refused() -> None:
    with pytest.raises(LabError, match=r"names no app, redis and nginx images"):
        changes.image_set({"app": "wslab/app:1"})


def test_the_replica_set_reads_back_as_written() -> None:
    s = live(serving=("app-1", "app-4"), replicas=2, highest=4, shutdown_timeout=2.0, change="deploy step 1 of 2")
    assert state.decode(state.encode(s)) == s
    assert s.replica_names == ("app-1", "app-4") and s.last_number == 4
    assert live().replica_names == ("app-1", "app-2", "app-3")


def test_a_state_file_removed_by_down_is_not_written_back() -> None:
    state.claim(live())
    state.forget("default")
    assert state.save(live(serving=("app-1",))) is False
    assert state.read("default") is None


def test_the_view_shows_the_change_under_way_and_the_last_one() -> None:
    from rich.console import Console

    console = Console(width=160, record=True)
    snap = view.Snapshot({"app-4": {"ok": True, "rooms": {"lobby": 2}, "connections": 5}})
    console.print(view.render(live(change="deploy step 2 of 3: app-2 restarting"), snap))
    console.print(view.render(live(changed="scale to 4: added app-4 in 1.2s"), snap))
    text = console.export_text()
    assert "under way: deploy step 2 of 3: app-2 restarting" in text and "last change: scale to 4" in text
    assert view.connected({"rooms": {"a": 2, "b": 1}}) == 3 and view.connected("down") is None
    assert view.connected({"app": "socketio", "connections": 7, "disconnects": 3}) == 4


# -- a deploy, step by step ------------------------------------------------------------------------------

class Replica:
    def __init__(self, name: str, calls: list[str], stopped: Callable[[str], None]) -> None:
        self.name, self.calls, self.stopped = name, calls, stopped

    def stop(self, timeout: int) -> None:
        self.calls.append(f"stop {self.name}")
        self.stopped(self.name)

    def kill(self) -> None:
        self.calls.append(f"kill {self.name}")
        self.stopped(self.name)

    def wait(self, condition: str) -> None:
        pass

    def start(self) -> None:
        self.calls.append(f"start {self.name}")


class FakeStack:
    """What Stepwise and RollingRestart use of a Stack: containers, the lock, the replicas, readiness."""

    def __init__(self, names: list[str], calls: list[str], *, after_ready: str = "", after_stop: str = "") -> None:
        self.containers = {n: Replica(n, calls, self.stopped) for n in names}
        self.networks: dict[str, object] = {}
        self.membership = threading.Lock()
        self.balancer = SimpleNamespace(name="nginx")
        self.names, self.calls = names, calls
        self.signal_after = {"ready": after_ready, "stop": after_stop}
        self.received: list[int] = []

    def replica_names(self) -> list[str]:
        return list(self.names)

    def wait_replica(self, name: str) -> None:
        self.calls.append(f"ready {name}")
        if self.signal_after["ready"] == name:
            self.received.append(signal.SIGINT)

    def stopped(self, name: str) -> None:
        if self.signal_after["stop"] == name:
            self.received.append(signal.SIGINT)


@pytest.fixture
def deploying(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def make(names: list[str], **signal_after: str):  # type: ignore[no-untyped-def]
        calls: list[str] = []
        stack = FakeStack(names, calls, **signal_after)
        monkeypatch.setattr(topology.signals, "pending", lambda: stack.received[0] if stack.received else None)
        monkeypatch.setattr(topology, "connections", lambda stack, names: dict.fromkeys(names, 2))
        state.claim(live(serving=tuple(names), replicas=len(names)))
        box = [state.read("default")]
        change = Change(box, progress=lambda line: None)  # type: ignore[list-item]
        return stack, calls, change

    return make


def test_a_signal_during_a_step_lets_it_finish_then_the_deploy_stops(deploying) -> None:
    stack, calls, change = deploying(["app-1", "app-2", "app-3"], after_stop="app-2")
    ops = Stepwise(stack, change, pause=0.0, steps=3)  # type: ignore[arg-type]
    with pytest.raises(Stopped) as info:
        RollingRestart(ops, ALL_REPLICAS, Fault(FaultKind.ROLLING_RESTART, ALL_REPLICAS, 0.0)).apply()
    assert calls == ["stop app-1", "start app-1", "ready app-1", "stop app-2", "start app-2", "ready app-2"]
    assert str(info.value) == ("deploy stopped after 2 replica(s) (app-1, app-2): app-3 not replaced; every "
                               "replica runs")
    written = state.read("default")
    assert written is not None and written.change == "deploy step 2 of 3: done" and ops.dropped == 4


def test_a_step_of_two_finishes_both_before_the_signal_stops_it(deploying) -> None:
    stack, calls, change = deploying(["app-1", "app-2", "app-3", "app-4"], after_stop="app-1")
    ops = Stepwise(stack, change, pause=0.0, steps=2)  # type: ignore[arg-type]
    fault = Fault(FaultKind.ROLLING_RESTART, ALL_REPLICAS, 0.0, graceful=False, max_unavailable=2)
    with pytest.raises(Stopped):
        RollingRestart(ops, ALL_REPLICAS, fault).apply()
    assert calls == ["kill app-1", "kill app-2", "start app-1", "start app-2", "ready app-1", "ready app-2"]


def test_without_a_signal_every_replica_is_replaced_in_order(deploying) -> None:
    stack, calls, change = deploying(["app-1", "app-4"])
    ops = Stepwise(stack, change, pause=0.0, steps=2)  # type: ignore[arg-type]
    RollingRestart(ops, ALL_REPLICAS, Fault(FaultKind.ROLLING_RESTART, ALL_REPLICAS, 0.0)).apply()
    assert calls == ["stop app-1", "start app-1", "ready app-1", "stop app-4", "start app-4", "ready app-4"]
    assert ops.replaced == ["app-1", "app-4"]


# -- one change's end, whatever it is ---------------------------------------------------------------------

@pytest.fixture
def attached(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` up to the body: an engine that answers and the stack found (stand-ins: no Docker here)."""
    from labs.infra import engine

    monkeypatch.setattr(engine, "connect_existing", lambda: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(changes, "attach", lambda client, live, timeout, progress: SimpleNamespace())
    monkeypatch.setattr(changes, "check_stack", lambda live, command, renders: None)
    state.claim(live())


def test_a_step_that_fails_is_one_line_exit_1_and_the_state_says_what_serves(attached, capsys) -> None:
    from labs.errors import StackError

    def body(change: Change, stack: object) -> str:
        change.note(change="scale-out: starting app-4", highest=4)
        raise StackError("app-4 not ready after 30.0s (127.0.0.1:32772)")

    assert changes.run(SimpleNamespace(name="default"), "scale", body, renders=True) == 1
    out, err = capsys.readouterr()
    assert err.startswith("wslab: scale failed after ") and err.endswith(
        ": app-4 not ready after 30.0s (127.0.0.1:32772); serving now: app-1, app-2, app-3\n") and out == ""
    after = state.read("default")
    assert after is not None and after.change == "" and after.highest == 4 and after.changed.startswith("scale failed")


def test_a_change_stopped_between_steps_exits_130_with_the_state_written(attached, capsys, monkeypatch) -> None:
    monkeypatch.setattr(changes.signals, "_state", SimpleNamespace(received=[signal.SIGTERM], depth=0, raised=False))

    def body(change: Change, stack: object) -> str:
        change.note(change="deploy step 2 of 3: app-1 restarting")
        raise Stopped("deploy stopped after 1 replica(s) (app-1): app-2, app-3 not replaced; every replica runs")

    code, out, err = run_cli_with(capsys, monkeypatch, body)
    assert code == 130 and out.startswith("deploy stopped after 1 replica(s) (app-1)")
    assert err == ("wslab: interrupted by SIGTERM; removed: nothing (the live stack stays up: the line above says "
                   "what serves)\n")
    after = state.read("default")
    assert after is not None and after.change == "" and after.changed.startswith("deploy stopped after 1 replica")


def run_cli_with(capsys, monkeypatch, body):  # type: ignore[no-untyped-def]
    """`python -m labs deploy` whose body is `body`."""
    monkeypatch.setattr(topology, "run", lambda args, command, _, renders: changes.run(args, command, body,
                                                                                      renders=renders))
    monkeypatch.setattr(cli.signals, "install", lambda: None)
    return run_cli(capsys, "deploy")
