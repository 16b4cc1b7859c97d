"""The live stack's pure parts: the state file, fault arguments, the view's rows, and what `up`, `down`,
`fault`, `heal` answer before anything starts (one line, exit 2; `down` with nothing up: exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from labs import cli
from labs.errors import LabError
from labs.live import remote, state, view
from labs.live.state import AppliedFault, LiveState
from labs.scenario import FaultKind

ME = os.getpid()


@pytest.fixture(autouse=True)
def live_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "LIVE_DIR", tmp_path / "live")
    return tmp_path / "live"


def live(name: str = "default", *, pid: int = ME, broker: str = "redis-pubsub", replicas: int = 3,
         faults: tuple[AppliedFault, ...] = ()) -> LiveState:
    return LiveState(name=name, scenario="pubsub", pid=pid, pid_start=state.process_start(pid) if pid == ME else "1",
                     replicas=replicas, broker=broker, app="websocket", run_id="3f289860", port=32772, faults=faults)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- state file ------------------------------------------------------------------------------------------

def test_a_state_reads_back_as_written_faults_included() -> None:
    s = live(faults=(AppliedFault("slow-consumer", "app-2", 1.5, {"restore": "pubsub 32mb 8mb 60"}),))
    assert state.decode(state.encode(s)) == s


def test_a_damaged_state_file_is_one_line_naming_down() -> None:
    with pytest.raises(LabError, match=r"damaged .*python -m labs down"):
        state.decode('{"name": "default"')


def test_a_second_claim_of_one_name_is_refused_naming_the_running_stack(live_dir: Path) -> None:
    state.claim(live())
    with pytest.raises(LabError) as info:
        state.claim(live())
    assert str(info.value) == (f"stack 'default' (pubsub, run 3f289860) is already up at http://127.0.0.1:32772/, "
                               f"pid {ME}; run `python -m labs down` first, or give another --name")
    state.claim(live("other"))  # another --name is another stack
    assert sorted(p.name for p in live_dir.glob("*.json")) == ["default.json", "other.json"]


def test_a_claim_left_by_a_dead_process_says_to_run_down() -> None:
    state.claim(live("demo", pid=999_999_999))
    with pytest.raises(LabError, match=r"its process 999999999 is gone; run `python -m labs down --name demo`"):
        state.claim(live("demo"))


def test_names_are_short_lowercase_words() -> None:
    assert state.check_name("demo-2") == "demo-2"
    for bad in ("", "Demo", "a b", "../x", "x" * 41):
        with pytest.raises(LabError, match="--name"):
            state.check_name(bad)


def test_release_removes_only_this_process_state() -> None:
    state.claim(live("mine"))
    state.release("mine", pid=ME + 1)
    assert state.read("mine") is not None
    state.release("mine", pid=ME)
    assert state.read("mine") is None


def test_updating_writes_back_a_change_and_refuses_when_nothing_is_up() -> None:
    with pytest.raises(LabError, match=r"nothing is up \(no stack named 'default'\)"):
        with state.updating("default"):
            pass
    state.claim(live())
    fault = AppliedFault("kill-replica", "app-2", 2.0)
    with state.updating("default") as box:
        box[0] = state.with_fault(box[0], fault)
    assert state.read("default").faults == (fault,)  # type: ignore[union-attr]


# -- fault arguments -------------------------------------------------------------------------------------

def test_an_unknown_fault_kind_lists_the_kinds() -> None:
    with pytest.raises(LabError) as info:
        remote.check_kind("explode")
    assert str(info.value) == ("unknown fault kind 'explode'; choose one of kill-replica, restart-redis, "
                               "pause-redis, partition-replica, kill-pubsub-clients, slow-consumer, "
                               "restart-broker, pause-broker, kill-cluster-master")
    assert remote.check_kind("pause-redis") is FaultKind.PAUSE_REDIS


@pytest.mark.parametrize("kind, target, stack, message", [
    ("kill-replica", "app-4", live(), "kill-replica needs a replica serving in this stack (app-1, app-2, app-3); got 'app-4'"),
    ("kill-replica", "redis", live(), "kill-replica needs a replica serving in this stack (app-1, app-2, app-3); got 'redis'"),
    ("pause-redis", "app-1", live(), "pause-redis targets redis; got 'app-1'"),
    ("restart-redis", "redis", live(broker="none"), "restart-redis needs a Redis broker; this stack (pubsub) has none"),
    ("slow-consumer", "app-1", live(broker="redis-streams"),
     "slow-consumer needs broker redis-pubsub; this stack (pubsub) has redis-streams"),
    ("partition-replica", "app-2", live(faults=(AppliedFault("kill-replica", "app-2", 1.0),)),
     "app-2 already has kill-replica applied; one fault at a time per target: run `python -m labs heal` first"),
    ("slow-consumer", "app-1", live(faults=(AppliedFault("pause-redis", "redis", 1.0),)),
     "slow-consumer runs redis-cli in Redis, which has pause-redis applied; run `python -m labs heal` first"),
    ("kill-pubsub-clients", "redis", live(faults=(AppliedFault("restart-redis", "redis", 1.0),)),
     "kill-pubsub-clients runs redis-cli in Redis, which has restart-redis applied; run `python -m labs heal` first"),
])
def test_a_bad_fault_target_is_refused_with_one_line(kind: str, target: str, stack: LiveState, message: str) -> None:
    with pytest.raises(LabError) as info:
        remote.check_target(FaultKind(kind), target, stack)
    assert str(info.value) == message


def test_a_fault_on_another_target_than_an_applied_one_is_accepted() -> None:
    remote.check_target(FaultKind.PAUSE_REDIS, "redis", live(faults=(AppliedFault("kill-replica", "app-2", 1.0),)))


# -- the commands, before anything starts ----------------------------------------------------------------

def test_fault_with_nothing_up_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fault", "kill-replica", "app-1")
    assert (code, out) == (2, "")
    assert err == "wslab: nothing is up (no stack named 'default'); start one with `python -m labs up SCENARIO`\n"


def test_an_unknown_fault_kind_is_refused_before_the_state_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fault", "explode", "app-1")
    assert code == 2 and err.startswith("wslab: unknown fault kind 'explode'; choose one of") and err.count("\n") == 1


def test_an_unknown_target_on_a_live_stack_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    state.claim(live())
    code, out, err = run_cli(capsys, "fault", "kill-replica", "app-7")
    assert (code, err) == (2, "wslab: kill-replica needs a replica serving in this stack (app-1, app-2, app-3); got 'app-7'\n")


def test_up_while_a_stack_is_up_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_setup", lambda progress: pytest.fail("up started something"))
    state.claim(live())
    code, out, err = run_cli(capsys, "--quiet", "up", "pubsub")
    assert code == 2 and err.startswith("wslab: stack 'default' (pubsub, run 3f289860) is already up") \
        and err.count("\n") == 1
    assert state.read("default") == live()  # the running stack's state is untouched


def test_up_with_an_unknown_scenario_claims_nothing(capsys: pytest.CaptureFixture[str], live_dir: Path) -> None:
    code, out, err = run_cli(capsys, "up", "no-such-scenario")
    assert code == 2 and err.count("\n") == 1 and not list(live_dir.glob("*.json"))


def test_down_with_nothing_up_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "down", "--name", "demo") == (
        0, "nothing is up (no stack named 'demo'); nothing to remove\n", "")


def test_heal_with_no_fault_applied_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    state.claim(live())
    assert run_cli(capsys, "heal") == (0, "no fault is applied to stack 'default'; nothing to heal\n", "")


# -- the live view ---------------------------------------------------------------------------------------

WS_HEALTH = {"replica": "app-1", "ok": True, "connections": 5, "received": 7, "delivered_frames": 12,
             "published": 7, "published_to_nobody": 2, "rooms": {"lobby": 2, "ops": 1}}
SIO_HEALTH = {"replica": "app-2", "ok": False, "app": "socketio", "manager": "ConfirmedRedisManager",
              "connections": 4, "disconnects": 1, "joins": 3, "received": 9}


def test_a_websocket_replica_row_counts_members_now_and_names_its_broker_trouble() -> None:
    assert view.replica_row("app-1", WS_HEALTH, "redis-pubsub") == (
        "app-1", "up", "3 (5)", "lobby:2, ops:1", "7", "12", "pub 7, to nobody 2")
    fresh = {"replica": "app-1", "ok": True, "connections": 0, "rooms": {}}
    assert view.replica_row("app-1", fresh, "redis-pubsub")[3:] == ("-", "0", "0", "pub 0")
    assert view.replica_row("app-1", fresh, "none")[6] == "none (in memory)"


def test_a_socketio_replica_row_and_a_replica_that_does_not_answer() -> None:
    assert view.replica_row("app-2", SIO_HEALTH) == (
        "app-2", "broker down", "3 (4)", "3 joins", "9", "-", "ConfirmedRedisManager")
    assert view.replica_row("app-3", "down") == ("app-3", "down", "-", "-", "-", "-", "nginx cannot reach it")
    assert view.replica_row("app-1", "no answer")[1:] == ("no answer", "-", "-", "-", "-", "nothing within 0.8s")
    assert view.replica_row("app-2", "exited")[1::5] == ("exited", "its container is not running")


def test_the_broker_reply_is_read_three_lines_at_a_time() -> None:
    assert view.parse_broker("channel\nchat:lobby\n3\nstream\nstream:lobby\n120\nchannel\nodd") == [
        ("channel", "chat:lobby", 3), ("stream", "stream:lobby", 120)]


def test_the_view_shows_replicas_redis_and_the_faults_applied() -> None:
    s = live(faults=(AppliedFault("kill-replica", "app-3", 0.0),))
    snap = view.Snapshot({"app-1": WS_HEALTH, "app-3": "down"}, broker=[("channel", "chat:lobby", 2)])
    console = Console(record=True, width=140)
    console.print(view.render(s, snap))
    text = console.export_text()
    assert "http://127.0.0.1:32772/" in text and "channel chat:lobby" in text
    assert "app-3" in text and "down" in text and "faults: kill-replica app-3 for" in text


def test_an_exited_process_not_yet_collected_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = state.process_start(child.pid)
    assert start and state.alive(child.pid, start)
    child.stdin.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
    assert not state.alive(child.pid, start)  # a zombie: exited, its parent has not waited for it yet
    child.wait()


def test_only_faults_that_last_are_kept_for_heal() -> None:
    live = [k for k in FaultKind if k.value in remote.KINDS]
    assert [k.value for k in live if not remote.lasting(k)] == ["kill-pubsub-clients"]


def test_a_topology_change_as_a_fault_names_the_live_commands_for_it() -> None:
    with pytest.raises(LabError) as info:
        remote.check_kind("scale-out")
    assert str(info.value).startswith("scale-out is a topology change: on a live stack run `python -m labs scale N`")


def test_up_names_nginx_itself_for_load_tools_and_what_the_published_port_holds() -> None:
    from types import SimpleNamespace

    from labs.infra.sizing import size_stack
    from labs.live.commands import load_line

    nginx = SimpleNamespace(reload=lambda: None,
                            attrs={"NetworkSettings": {"Networks": {"wslab-3f289860-front": {"IPAddress": "172.30.0.5"}}}})
    stack = SimpleNamespace(containers={"nginx": nginx}, networks={"front": SimpleNamespace(name="wslab-3f289860-front")})
    line = load_line(stack, size_stack(3, fd_limit=20_000), proxied=True)  # type: ignore[arg-type]
    assert line == ("load tools: ws://172.30.0.5:8080/ws   (nginx itself: holds 20,000 connections; the 127.0.0.1 "
                    "port passes docker-proxy, ~3,333)")
    line = load_line(stack, size_stack(3, fd_limit=20_000), proxied=False)  # type: ignore[arg-type]
    assert line.endswith("holds 20,000 connections; the 127.0.0.1 port too: no docker-proxy on it)")
    assert "holds 9,216 of 20,000 connections" in load_line(
        stack, size_stack(3, fd_limit=4096), proxied=True)  # type: ignore[arg-type]
