"""Topology changes in [[faults]] (scale-out, scale-in, rolling-restart, reload-lb): their keys, ranges,
targets and order are checked when the file is read; each refusal is one line naming the fault, the key
and the value."""

import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.infra.faults import reaches
from labs.infra.render import for_names, render_nginx
from labs.scenario import ALL_REPLICAS, FaultKind, on_swarm
from labs.spec import render, shutdown_timeout_ms
from tests.unit.test_hostile_scenarios import WS, refused

FAULTS = WS.replace("messages = 20", "messages = 100").replace("[expect]", "{faults}[expect]")


def with_faults(*tables: str) -> str:
    return FAULTS.format(faults="".join(f"[[faults]]\n{t.strip()}\n" for t in tables))


def parse(*tables: str) -> scenario.Scenario:
    return scenario.parse(with_faults(*tables), name="deploy")


def test_a_scale_out_names_its_replicas_after_the_last_one_and_numbers_are_never_reused():
    s = parse('kind = "scale-in"\ntarget = "app-3"\nat = 1', 'kind = "scale-out"\ncount = 2\nat = 2',
              'kind = "scale-in"\ntarget = "app-5"\nat = 3')
    assert [(f.kind, f.target) for f in s.faults] == [
        (FaultKind.SCALE_IN, "app-3"), (FaultKind.SCALE_OUT, "app-4"), (FaultKind.SCALE_IN, "app-5")]


def test_the_changes_are_walked_in_the_order_of_their_at_not_of_the_file():
    s = parse('kind = "scale-in"\ntarget = "app-4"\nat = 3', 'kind = "scale-out"\nat = 1')
    assert [f.target for f in s.faults] == ["app-4", "app-4"]


def test_a_rolling_restart_without_target_replaces_every_replica_with_its_keys():
    (f,) = parse('kind = "rolling-restart"\ngraceful = false\ndrain = true\nmax_unavailable = 2\nstep_pause = 0.5\n'
                 'at = 1').faults
    assert (f.target, f.restarts_all, f.graceful, f.drain, f.max_unavailable, f.step_pause) == (
        ALL_REPLICAS, True, False, True, 2, 0.5)
    (plain,) = parse('kind = "rolling-restart"\nat = 1').faults
    assert (plain.graceful, plain.drain, plain.max_unavailable, plain.step_pause) == (True, False, 1, 0.0)


def test_reload_lb_targets_nginx_and_its_shutdown_timeout_goes_into_the_config_from_the_start():
    s = parse('kind = "reload-lb"\nshutdown_timeout = 0.5\nat = 1')
    assert s.faults[0].target == "nginx" and shutdown_timeout_ms(s) == 500
    assert "worker_shutdown_timeout 500ms;" in render(s)
    assert "worker_shutdown_timeout" not in render(parse('kind = "reload-lb"\nat = 1'))


def test_what_each_change_reaches():
    out, = parse('kind = "scale-out"\ncount = 2\nshutdown_timeout = 1\nat = 1').faults
    assert reaches(out, {}) == ("app-4", "app-5", "lb")
    inn, = parse('kind = "scale-in"\ntarget = "app-2"\nat = 1').faults
    assert reaches(inn, {}) == ("app-2",)
    reload, = parse('kind = "reload-lb"\nat = 1').faults
    assert reaches(reload, {}) == ("lb",)


@pytest.mark.parametrize("tables, parts", [
    pytest.param(['kind = "kill-replica"\ntarget = "app-2"\nat = 1\ngraceful = true'],
                 ("fault 1", "graceful = True", "does not fit kill-replica", "rolling-restart"), id="graceful-on-kill"),
    pytest.param(['kind = "scale-in"\ntarget = "app-2"\nat = 1\nmax_unavailable = 2'],
                 ("max_unavailable = 2", "does not fit scale-in"), id="max-unavailable-on-scale-in"),
    pytest.param(['kind = "rolling-restart"\nat = 1\nshutdown_timeout = 1'],
                 ("shutdown_timeout = 1", "does not fit rolling-restart", "reload-lb, scale-in, scale-out"),
                 id="shutdown-timeout-on-rolling"),
    pytest.param(['kind = "reload-lb"\nat = 1\ncount = 2'], ("count = 2", "does not fit reload-lb"), id="count-on-reload"),
    pytest.param(['kind = "scale-out"\nat = 1\nheal_after = 2'], ("heal_after = 2", "not healed"), id="heal-after"),
    pytest.param(['kind = "scale-out"\nat = 1\ntarget = "app-4"'], ("names its new replicas itself", "count"),
                 id="scale-out-target"),
    pytest.param(['kind = "scale-out"\nat = 1\ncount = 9'], ("count must be between 1 and 8", "9"), id="count-9"),
    pytest.param(['kind = "scale-out"\nat = 1\ncount = 0'], ("count must be between 1 and 8", "0"), id="count-0"),
    pytest.param(['kind = "scale-out"\nat = 1\ncount = 8', 'kind = "scale-out"\nat = 2\ncount = 8',
                  'kind = "scale-out"\nat = 3\ncount = 8', 'kind = "scale-out"\nat = 4\ncount = 8'],
                 ("fault 4", "makes 35 replicas", "32"), id="past-32-replicas"),
    pytest.param(['kind = "scale-in"\nat = 1'], ("scale-in needs target",), id="scale-in-no-target"),
    pytest.param(['kind = "scale-in"\ntarget = "app-7"\nat = 1'], ("serving at 1s", "app-1, app-2, app-3", "'app-7'"),
                 id="scale-in-unknown"),
    pytest.param(['kind = "scale-in"\ntarget = "app-2"\nat = 1', 'kind = "rolling-restart"\ntarget = "app-2"\nat = 2'],
                 ("fault 2", "serving at 2s", "app-1, app-3"), id="restart-after-scale-in"),
    pytest.param(['kind = "scale-in"\ntarget = "app-1"\nat = 1', 'kind = "scale-in"\ntarget = "app-2"\nat = 2',
                  'kind = "scale-in"\ntarget = "app-3"\nat = 3'], ("fault 3", "leave no replica"), id="scale-in-last"),
    pytest.param(['kind = "scale-in"\ntarget = 3\nat = 1'], ("target must be a replica's name", "3"), id="target-int"),
    pytest.param(['kind = "reload-lb"\ntarget = "redis"\nat = 1'], ("reload-lb targets nginx", "'redis'"),
                 id="reload-target"),
    pytest.param(['kind = "rolling-restart"\nat = 1\ngraceful = "yes"'], ("graceful must be true or false", "'yes'"),
                 id="graceful-string"),
    pytest.param(['kind = "rolling-restart"\nat = 1\nmax_unavailable = 4'], ("max_unavailable = 4", "replaces 3"),
                 id="max-unavailable-4"),
    pytest.param(['kind = "rolling-restart"\ntarget = "app-1"\nat = 1\nmax_unavailable = 2'],
                 ("max_unavailable = 2", "replaces 1 replica(s) (app-1)"), id="max-unavailable-one-target"),
    pytest.param(['kind = "rolling-restart"\nat = 1\nstep_pause = 61'], ("step_pause must be between 0 and 60", "61"),
                 id="step-pause-61"),
    pytest.param(['kind = "rolling-restart"\nat = 1\nstep_pause = nan'], ("step_pause", "nan"), id="step-pause-nan"),
    pytest.param(['kind = "reload-lb"\nat = 1\nshutdown_timeout = 0'], ("shutdown_timeout must be between 0.001 and 600",),
                 id="shutdown-timeout-0"),
    pytest.param(['kind = "reload-lb"\nat = 1\nshutdown_timeout = inf'], ("shutdown_timeout", "inf"),
                 id="shutdown-timeout-inf"),
    pytest.param(['kind = "reload-lb"\nat = 1\nshutdown_timeout = 1', 'kind = "scale-out"\nat = 2\nshutdown_timeout = 2'],
                 ("fault 2", "shutdown_timeout = 2.0", "fault 1 has 1.0", "one value for the run"), id="two-timeouts"),
    pytest.param(['kind = "reload-lb"\nat = 1\nshutdown_timeout = 1', 'kind = "reload-lb"\nat = 2'],
                 ("fault 2", "shutdown_timeout = None", "fault 1 has 1.0"), id="timeout-and-none"),
    pytest.param(['kind = "rolling-restart"\nat = 1\ndrain = true', 'kind = "reload-lb"\nat = 2\nshutdown_timeout = 1'],
                 ("fault 1", "drain reloads nginx", "shutdown_timeout = 1.0", "one or the other"), id="drain-and-timeout"),
    pytest.param(['kind = "scale-in"\ntarget = "app-1"\nat = 1\ndrain = true'], ("drain = True", "does not fit scale-in"),
                 id="drain-on-scale-in"),
    pytest.param(['kind = "rolling-restart"\nat = 1\ndrain = 1'], ("drain must be true or false", "1"), id="drain-int"),
    pytest.param(['kind = "reload-lb"\nat = 1', 'kind = "scale-out"\nat = 1'],
                 ("fault 2", "starts with fault 1", "one at a time"), id="same-at"),
    pytest.param(['kind = "reload-lb"\nat = 10.5'], ("past the end of sending",), id="at-past-end"),
])
def test_a_topology_change_that_does_not_fit_is_refused_with_one_line(tables, parts):
    refused(with_faults(*tables), *parts)


def test_a_topology_change_other_than_a_rolling_restart_is_refused_on_a_swarm_before_the_run():
    message = refused(with_faults('kind = "scale-out"\nat = 1') + "[swarm]\nnodes = 3\n", "scale-out",
                      "does not run on a Swarm")
    assert "only rolling-restart" in message
    with pytest.raises(ScenarioError, match="reload-lb does not run on a Swarm"):
        on_swarm(parse('kind = "reload-lb"\nat = 1'))
    assert on_swarm(parse('kind = "rolling-restart"\nat = 1')).swarm is not None


def test_max_fails_is_nginx_s_and_reaches_its_upstream():
    s = scenario.parse(WS.replace("replicas = 3", "replicas = 3\nmax_fails = 1"), name="deploy")
    assert s.topology.max_fails == 1 and "server app-1:8000 max_fails=1 fail_timeout=10s;" in render(s)
    assert "server app-1:8000 max_fails=0;" in render(scenario.parse(WS, name="deploy"))
    refused(WS.replace("replicas = 3", 'replicas = 3\nbalancer = "haproxy"\nmax_fails = 1'), "topology.max_fails = 1",
            "nginx setting", 'balancer = "haproxy"')
    refused(WS.replace("replicas = 3", "replicas = 3\nmax_fails = -1"), "max_fails must be between 0 and 1000")




def test_a_renamed_upstream_keeps_the_health_location_for_every_replica():
    conf = render_nginx(for_names(("app-1", "app-4"), shutdown_timeout_ms=1000))
    assert "server app-1:8000 " in conf and "server app-4:8000 " in conf and "app-2" not in conf
    assert "location ~ ^/_lab/(?<lab_replica>app-[0-9]+)/healthz$" in conf
    assert "worker_shutdown_timeout 1000ms;" in conf
