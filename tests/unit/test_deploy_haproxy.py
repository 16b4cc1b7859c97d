"""Topology changes behind HAProxy, from literal inputs: the config each change renders (the servers, their
pinned ids, the policy, hard-stop-after), how the scenario file says it, and what HAProxy is sized to hold."""

import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.infra.faults import reaches
from labs.infra.render import Sticky
from labs.infra.render_haproxy import RenderError, for_names, render_haproxy, server_id
from labs.infra.sizing import haproxy_maxconn, haproxy_most, size_stack
from labs.scenario import Balance, Balancer, FaultKind
from labs.spec import plan, renderer, shutdown_timeout_ms
from tests.unit.test_deploy_faults import with_faults
from tests.unit.test_hostile_scenarios import refused

NET = "172.30.0.0/16"


def haproxy(*tables: str, balance: str = "round-robin", topology: str = "") -> str:
    return with_faults(*tables).replace(
        "replicas = 3", f'replicas = 3\nbalancer = "haproxy"\nbalance = "{balance}"\n{topology}')


def config(text: str, replicas: tuple[str, ...]) -> str:
    """The haproxy.cfg a change renders for `replicas`, as the running stack renders it."""
    s = scenario.parse(text, name="deploy")
    p = plan(s, fd_limit=20_000)
    return renderer(s, Sticky.MAP, p.sizing)(NET, replicas)


def servers(conf: str) -> list[str]:
    """The `server` lines of `backend app`, stripped."""
    section = conf.split("\nbackend app\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("server ")]


def test_a_scale_out_adds_the_new_server_with_its_own_id_on_the_consistent_ring():
    text = haproxy('kind = "scale-out"\nat = 1', balance="hash-consistent", topology="hard_stop_after = 1.0")
    before, after = config(text, ("app-1", "app-2", "app-3")), config(text, ("app-1", "app-2", "app-3", "app-4"))
    assert servers(before) == [f"server app-{i} app-{i}:8000 id {i}" for i in (1, 2, 3)]
    assert servers(after) == servers(before) + ["server app-4 app-4:8000 id 4"]
    for conf in (before, after):
        assert "    balance source\n    hash-type consistent\n" in conf and "    hard-stop-after 1000ms\n" in conf
    # everything but the backend's servers and the header's count is the same config
    assert [line for line in after.splitlines() if "app-4" not in line and not line.startswith("# wslab")] == [
        line for line in before.splitlines() if not line.startswith("# wslab")]


def test_a_scale_out_under_the_plain_hash_keeps_the_static_map():
    conf = config(haproxy('kind = "scale-out"\nat = 1', balance="hash"), ("app-1", "app-2", "app-3", "app-4"))
    assert "    balance source\n    hash-type map-based sdbm avalanche\n" in conf and "server app-4 app-4:8000 id 4" in conf


def test_a_scale_in_takes_the_server_out_and_the_others_keep_their_ids():
    text = haproxy('kind = "scale-in"\ntarget = "app-2"\nat = 1', balance="hash-consistent")
    conf = config(text, ("app-1", "app-3"))
    # app-3 stays id 3: an id HAProxy assigned itself would be 2, and app-3 would take app-2's ring points
    assert servers(conf) == ["server app-1 app-1:8000 id 1", "server app-3 app-3:8000 id 3"]
    assert "app-2" not in conf.split("\nbackend app\n", 1)[1].split("\n\n", 1)[0]


def test_a_drained_rolling_restart_renders_each_step_without_its_replica_then_everyone_again():
    text = haproxy('kind = "rolling-restart"\ndrain = true\nat = 1', balance="cookie")
    step = config(text, ("app-2", "app-3"))
    assert servers(step) == [f"server app-{i} app-{i}:8000 id {i} cookie app-{i}" for i in (2, 3)]
    assert servers(config(text, ("app-1", "app-2", "app-3")))[0] == "server app-1 app-1:8000 id 1 cookie app-1"
    # the replica out of the backend still answers its /healthz by name: the step waits for it there
    assert "acl lab_replica path_reg ^/_lab/app-[0-9]+/healthz$" in step


def test_reload_lb_targets_haproxy_and_hard_stop_after_is_its_shutdown_timeout_from_the_start():
    s = scenario.parse(haproxy('kind = "reload-lb"\nat = 1', topology="hard_stop_after = 0.5"), name="deploy")
    (fault,) = s.faults
    assert (fault.target, fault.shutdown_timeout) == ("haproxy", 0.5)
    assert reaches(fault, {}) == ("lb",) and shutdown_timeout_ms(s) == 500  # a fault that cuts reaches the lb
    conf = config(haproxy('kind = "reload-lb"\nat = 1', topology="hard_stop_after = 0.5"), ("app-1", "app-2", "app-3"))
    assert "    hard-stop-after 500ms\n" in conf and "worker_shutdown_timeout" not in conf
    plain = scenario.parse(haproxy('kind = "reload-lb"\nat = 1'), name="deploy")
    assert plain.faults[0].shutdown_timeout is None
    assert "hard-stop-after" not in config(haproxy('kind = "reload-lb"\nat = 1'), ("app-1",))


def test_every_change_that_reloads_haproxy_carries_hard_stop_after_and_a_rolling_restart_does_not():
    s = scenario.parse(haproxy('kind = "scale-out"\nat = 1', 'kind = "scale-in"\ntarget = "app-1"\nat = 2',
                               'kind = "rolling-restart"\nat = 3', 'kind = "reload-lb"\nat = 4',
                               topology="hard_stop_after = 2"), name="deploy")
    assert [(f.kind, f.shutdown_timeout) for f in s.faults] == [
        (FaultKind.SCALE_OUT, 2.0), (FaultKind.SCALE_IN, 2.0), (FaultKind.ROLLING_RESTART, None),
        (FaultKind.RELOAD_LB, 2.0)]


def test_nginx_s_knobs_are_refused_behind_haproxy_in_one_line_naming_its_own():
    refused(haproxy('kind = "reload-lb"\nshutdown_timeout = 0.5\nat = 1'), "fault 1", "shutdown_timeout = 0.5",
            "nginx's worker_shutdown_timeout", "set topology.hard_stop_after instead")
    refused(haproxy('kind = "reload-lb"\ntarget = "nginx"\nat = 1'), "reload-lb targets haproxy, got 'nginx'")
    refused(haproxy('kind = "rolling-restart"\ndrain = true\nat = 1', topology="hard_stop_after = 1"),
            "fault 1", "drain reloads haproxy at every step", "topology.hard_stop_after = 1", "every WebSocket")


def test_haproxy_is_one_process_sized_by_the_open_file_limit():
    # two files per proxied WebSocket, 200 of its own, 64 connections spare: about 9,800 WebSockets
    assert (haproxy_maxconn(20_000), haproxy_most(20_000)) == (9_900, 9_836)
    sizing = size_stack(3, fd_limit=20_000, balancer=Balancer.HAPROXY)
    assert sizing.connections == 9_836 and sizing.reduced and sizing.haproxy_maxconn == 9_900
    assert sizing.describe() == ("holds 9,836 of 20,000 connections: HAProxy 1 process, maxconn 9,900, 3 replica(s), "
                                 "20,000 open files per process")
    assert size_stack(3, fd_limit=4096, balancer=Balancer.HAPROXY).haproxy_maxconn == 1_948
    conf = config(haproxy('kind = "reload-lb"\nat = 1'), ("app-1", "app-2", "app-3"))
    assert conf.count("    maxconn 9900\n") == 2  # global, and the frontend's own (else it takes the global one)
    assert size_stack(3, fd_limit=20_000).connections == 20_000  # nginx's workers hold the whole 20,000


@pytest.mark.parametrize("names, message", [
    (("app-1", "app-1"), "the servers' names repeat"),
    (("app-0",), "bad server name 'app-0'"),
    (("web-1",), "bad server name 'web-1'"),
])
def test_a_server_set_that_would_clash_on_the_ring_is_refused(names, message):
    with pytest.raises(RenderError, match=message):
        render_haproxy(for_names(names, balance=Balance.HASH_CONSISTENT))
    assert server_id("app-12") == 12


def test_a_topology_change_still_does_not_run_on_a_swarm_behind_haproxy():
    with pytest.raises(ScenarioError, match="runs on one engine only"):
        scenario.parse(haproxy('kind = "scale-out"\nat = 1') + "[swarm]\nnodes = 3\n", name="deploy")
