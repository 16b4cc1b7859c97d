"""The topology changes' actions and the balancer reload, against stand-ins for Docker: what each change asks
of the stack, in which order, what it reports, and how a reload is seen to have happened."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from labs import scenario
from labs.errors import StackError
from labs.infra import balancers
from labs.infra.faults import ACTIONS, run_faults
from labs.infra.operations import Operations
from labs.infra.stack import Stack, StackSpec
from labs.infra.swarm import nodes
from labs.infra.swarm.stack import SwarmStack
from labs.scenario import FaultKind
from labs.settings import ROOT
from tests.unit.test_deploy_faults import parse


class Ops:
    """Records every call; replicas app-1..3 serve."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.serving = ["app-1", "app-2", "app-3"]

    def __getattr__(self, name: str):
        def record(*args, **kwargs) -> None:
            self.calls.append(" ".join([name, *map(str, args), *(f"{k}={v}" for k, v in kwargs.items())]))
        return record

    def replicas(self) -> list[str]:
        return list(self.serving)

    #: one engine's step of a rolling restart, over the recorded calls
    replace = Operations.replace


def action(*tables: str) -> tuple[Ops, object]:
    (fault,) = parse(*tables).faults
    ops = Ops()
    return ops, ACTIONS[fault.kind](ops, fault.target, fault)  # type: ignore[arg-type]


def test_a_rolling_restart_stops_a_step_then_starts_and_waits_for_each_and_reports_one_window_each():
    ops, act = action('kind = "rolling-restart"\nmax_unavailable = 2\nat = 1')
    act.apply()
    assert ops.calls == ["stop app-1 timeout=10", "stop app-2 timeout=10", "start_again app-1", "start_again app-2",
                         "wait_replica app-1", "wait_replica app-2",
                         "stop app-3 timeout=10", "start_again app-3", "wait_replica app-3"]
    assert [name for name, _, _ in act.steps] == ["app-1", "app-2", "app-3"]
    assert all(began <= ended for _, began, ended in act.steps)


def test_a_drained_rolling_restart_reloads_nginx_without_the_step_and_with_it_once_it_is_ready():
    ops, act = action('kind = "rolling-restart"\ndrain = true\nat = 1')
    act.apply()
    everyone = "serve ('app-1', 'app-2', 'app-3')"
    assert ops.calls[:5] == ["serve ('app-2', 'app-3')", "stop app-1 timeout=10", "start_again app-1",
                             "wait_replica app-1", everyone]
    assert ops.calls[5] == "serve ('app-1', 'app-3')" and ops.calls[-1] == everyone and len(ops.calls) == 15


def test_a_rolling_restart_that_is_not_graceful_kills_and_one_with_a_target_replaces_only_it():
    ops, act = action('kind = "rolling-restart"\ngraceful = false\ntarget = "app-2"\nat = 1')
    act.apply()
    assert ops.calls == ["kill app-2", "start_again app-2", "wait_replica app-2"]


def test_the_step_pause_is_kept_between_steps_not_before_the_first():
    ops, act = action('kind = "rolling-restart"\nstep_pause = 0.2\nat = 1')
    t0 = time.monotonic()
    act.apply()
    assert 0.4 <= time.monotonic() - t0 < 1.5
    starts = [began for _, began, _ in act.steps]
    assert starts[0] - t0 < 0.1 and starts[1] - starts[0] >= 0.2


@pytest.mark.parametrize("table, call", [
    ('kind = "scale-out"\ncount = 2\nshutdown_timeout = 1\nat = 1', "scale_out ['app-4', 'app-5'] retire_within=1.0"),
    ('kind = "scale-in"\ntarget = "app-2"\nat = 1', "scale_in app-2 retire_within=None"),
    ('kind = "reload-lb"\nat = 1', "serve ('app-1', 'app-2', 'app-3') retire_within=None"),
])
def test_each_change_asks_the_stack_once(table, call):
    ops, act = action(table)
    act.apply()
    assert ops.calls == [call]


def test_topology_changes_run_one_at_a_time_in_the_order_of_their_at():
    s = parse('kind = "reload-lb"\nat = 0.05', 'kind = "scale-in"\ntarget = "app-3"\nat = 0.0')
    log: list[tuple[str, float, float]] = []

    class Slow(Ops):
        def serve(self, replicas, **kwargs) -> None:
            t = time.monotonic()
            time.sleep(0.2)
            log.append(("serve", t, time.monotonic()))

        def scale_in(self, name, **kwargs) -> None:
            t = time.monotonic()
            time.sleep(0.2)
            log.append(("scale_in", t, time.monotonic()))

    class Fake:
        def operations(self) -> Slow:
            return Slow()

        def node_of(self) -> dict[str, str]:
            return {}

    events = asyncio.run(run_faults(Fake(), s.faults, started_at=time.monotonic()))  # type: ignore[arg-type]
    assert [name for name, _, _ in log] == ["scale_in", "serve"] and log[1][1] >= log[0][2]
    assert [(e.kind, e.target) for e in events] == [("scale-in", "app-3"), ("reload-lb", "nginx")]
    assert events[1].applied >= events[0].healed


def test_a_change_on_a_stack_without_its_renderer_or_on_a_swarm_is_refused_in_one_line():
    spec = StackSpec(run_id="x", replicas=2, broker="none", balancer_conf="", images=None)  # type: ignore[arg-type]
    with pytest.raises(StackError, match="given whole"):
        Stack(None, spec).lb_config(("app-1",))
    swarm = SwarmStack(None, spec, nodes.Swarm("o", "", ()), {})
    with pytest.raises(StackError, match="^scale-out needs the stack that runs the scenario"):
        swarm.operations().scale_out(["app-3"])
    assert Operations(Stack(None, spec)).topology is None


class Container:
    """A container whose process list changes as nginx's does on SIGHUP: new workers, old ones retiring until
    `retire` polls have passed; or, refusing, an [emerg] line and the same workers."""

    def __init__(self, *, refuse: bool = False, retire: int = 0) -> None:
        self.refuse, self.retire = refuse, retire
        self.workers = {"11": "nginx: worker process"}
        self.files: list[bytes] = []
        self.signals: list[str] = []
        self.log = b""

    def top(self) -> dict:
        if self.retire and "11" in self.workers:
            self.retire -= 1
            if not self.retire:
                del self.workers["11"]
        rows = [["nobody", "1", "0", "nginx: master process nginx -c /etc/wslab/nginx.conf"]]
        rows += [["nobody", pid, "1", title] for pid, title in self.workers.items()]
        return {"Titles": ["UID", "PID", "PPID", "CMD"], "Processes": rows}

    def put_archive(self, path: str, data: bytes) -> None:
        self.files.append(data)

    def kill(self, signal: str) -> None:
        self.signals.append(signal)
        if self.refuse:
            self.log = b'nginx: [emerg] host not found in upstream "app-9:8000"\n'
            return
        self.workers = {"11": "nginx: worker process is shutting down", "12": "nginx: worker process"}
        if not self.retire:
            del self.workers["11"]

    def logs(self, since: int) -> bytes:
        return self.log


def test_a_reload_writes_the_file_signals_pid_1_and_returns_when_a_new_worker_runs():
    c = Container()
    balancers.reload(c, balancers.NGINX, config="events {}\n")  # type: ignore[arg-type]
    assert c.signals == ["SIGHUP"] and len(c.files) == 1
    assert balancers.workers(c) == {"12"}  # type: ignore[arg-type]


def test_a_reload_with_a_shutdown_timeout_waits_until_the_old_workers_are_gone():
    c = Container(retire=5)
    balancers.reload(c, balancers.NGINX, retire_within=1.0)  # type: ignore[arg-type]
    assert c.workers == {"12": "nginx: worker process"} and c.files == []


def test_a_refused_config_fails_with_nginxs_own_words():
    with pytest.raises(StackError, match=r"^nginx rejected the rendered config \(nginx -t\): host not found in upstream "
                                         r".*; it goes on with the config it had$"):
        balancers.reload(Container(refuse=True), balancers.NGINX, config="x")  # type: ignore[arg-type]


def test_the_archive_holds_the_one_config_file_where_nginx_reads_it():
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(balancers.archive(balancers.NGINX_CONF, "worker_processes 1;\n"))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode) == ("etc/wslab/nginx.conf", 0o644)
        assert tar.extractfile(member).read() == b"worker_processes 1;\n"  # type: ignore[union-attr]


def deploys() -> tuple[list[str], list[str]]:
    """The Makefile's deploy scenarios that have a HAProxy twin, and those that run alone."""
    makefile = (ROOT / "Makefile").read_text()
    twinned = makefile.split("DEPLOYED :=", 1)[1].split("\nDEPLOYS :=", 1)[0].replace("\\", " ").split()
    line = makefile.split("DEPLOYS :=", 1)[1].split("\n", 1)[0]
    assert line.startswith(" $(foreach s,$(DEPLOYED),$(s) $(s)-haproxy) "), line
    return twinned, line.split(")")[-1].split()


def test_make_scenario_deploys_runs_exactly_the_deploy_scenarios_each_beside_its_haproxy_twin():
    twinned, alone = deploys()
    listed = [n for name in twinned for n in (name, f"{name}-haproxy")] + alone
    assert sorted(listed) == [n for n in scenario.available() if n.startswith("deploy-")]
    for kind in scenario.Balancer:
        assert {f.kind for n in listed for f in scenario.load(n).faults
                if scenario.load(n).topology.balancer is kind} == {
            FaultKind.SCALE_OUT, FaultKind.SCALE_IN, FaultKind.ROLLING_RESTART, FaultKind.RELOAD_LB}
    # nginx's own max_fails runs alone: HAProxy here has no health checks to hold a replica down
    assert alone == ["deploy-streams-rolling-max-fails"]


def test_a_haproxy_twin_is_its_deploy_with_the_same_workload_and_expect_where_the_behaviour_is_the_same():
    twinned, _ = deploys()
    for name in twinned:
        nginx, twin = scenario.load(name), scenario.load(f"{name}-haproxy")
        assert (nginx.topology.balancer, twin.topology.balancer) == (scenario.Balancer.NGINX, scenario.Balancer.HAPROXY)
        assert twin.workload == nginx.workload and twin.expect == nginx.expect, name
        assert twin.topology.balance == nginx.topology.balance and twin.topology.broker == nginx.topology.broker
        # the same change (a reload targets the balancer's own container); nginx's shutdown_timeout is the
        # twin's hard_stop_after
        def change(f: scenario.Fault) -> scenario.Fault:
            return dataclasses.replace(f, shutdown_timeout=None,
                                       target="lb" if f.kind is FaultKind.RELOAD_LB else f.target)
        assert list(map(change, twin.faults)) == list(map(change, nginx.faults)), name
        assert [f.shutdown_timeout for f in twin.faults] == [f.shutdown_timeout for f in nginx.faults], name


def test_haproxys_master_is_seen_catching_its_reload_signal_in_the_hosts_proc(tmp_path):
    c = Container()  # its main process is pid 1 in the engine's list
    (tmp_path / "1").mkdir()
    status = tmp_path / "1" / "status"
    status.write_text("Name:\thaproxy\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000000800\n")  # SIGUSR2: bit 12
    assert balancers.catches_reload_now(c, balancers.HAPROXY, proc=tmp_path) is True  # type: ignore[arg-type]
    status.write_text("Name:\thaproxy\nSigIgn:\t0000000000000800\nSigCgt:\t0000000000004002\n")  # re-executing
    assert balancers.catches_reload_now(c, balancers.HAPROXY, proc=tmp_path) is False  # type: ignore[arg-type]
    # another process under that pid (the lab in another PID namespace), or none: unknown, not "no"
    status.write_text("Name:\tsystemd\nSigCgt:\t0000000000000800\n")
    assert balancers.catches_reload_now(c, balancers.HAPROXY, proc=tmp_path) is None  # type: ignore[arg-type]
    assert balancers.catches_reload_now(c, balancers.HAPROXY, proc=tmp_path / "none") is None  # type: ignore[arg-type]


def test_a_haproxy_reload_waits_until_the_master_takes_the_signal_again(monkeypatch):
    c = Container()
    seen = iter([False, False, True])
    monkeypatch.setattr(balancers, "catches_reload_now", lambda container, balancer: next(seen))
    balancers.reload(c, balancers.HAPROXY, config="global\n")  # type: ignore[arg-type]
    assert c.signals == ["SIGUSR2"] and next(seen, "used up") == "used up"
    monkeypatch.setattr(balancers, "catches_reload_now", lambda container, balancer: False)
    with pytest.raises(StackError, match="haproxy's main process did not take SIGUSR2 within 0.05s"):
        balancers.await_reloadable(c, balancers.HAPROXY, timeout=0.05)  # type: ignore[arg-type]
    balancers.await_reloadable(c, balancers.NGINX, timeout=0.0)  # type: ignore[arg-type]  # nginx: always
