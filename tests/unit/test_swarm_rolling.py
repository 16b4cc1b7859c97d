"""A rolling restart on a Swarm: the fault's keys as a service's UpdateConfig and stop settings, the update's
status read, and the keys a Swarm refuses, each in one line."""

import pytest

from labs import scenario
from labs.errors import ScenarioError, StackError
from labs.infra.swarm.rolling import stop_settings, update_config, update_settled
from labs.protocols.change_cells import change_text
from labs.scenario import on_swarm
from labs.scenario.faults import UpdateOrder
from tests.unit.test_deploy_faults import parse, with_faults
from tests.unit.test_hostile_scenarios import refused

SWARM = "[swarm]\nnodes = 3\n"


def on_a_swarm(*tables: str) -> scenario.Scenario:
    return scenario.parse(with_faults(*tables) + SWARM, name="deploy")


def test_start_first_with_a_pause_and_two_at_a_time_becomes_the_update_config():
    (f,) = on_a_swarm('kind = "rolling-restart"\norder = "start-first"\nstep_pause = 0.5\nmax_unavailable = 2\n'
                      'at = 1').faults
    assert f.order is UpdateOrder.START_FIRST
    assert dict(update_config(f)) == {"Parallelism": 2, "Delay": 500_000_000, "FailureAction": "pause",
                                      "Monitor": 2_000_000_000, "Order": "start-first"}


def test_a_rolling_restart_without_order_stops_first_with_no_delay():
    (f,) = on_a_swarm('kind = "rolling-restart"\nat = 1').faults
    assert dict(update_config(f)) == {"Parallelism": 1, "Delay": 0, "FailureAction": "pause",
                                      "Monitor": 2_000_000_000, "Order": "stop-first"}


def test_graceful_is_sigterm_with_ten_seconds_and_not_graceful_is_sigkill():
    assert stop_settings(True) == {"stop_signal": "SIGTERM", "stop_grace_period": 10_000_000_000}
    assert stop_settings(False) == {"stop_signal": "SIGKILL", "stop_grace_period": 10_000_000_000}


@pytest.mark.parametrize("status, done", [
    (None, False),
    ({"State": "updating", "Message": "update in progress"}, False),
    ({"State": "completed", "Message": "update completed"}, True),
])
def test_an_update_is_settled_once_swarm_calls_it_completed(status, done):
    assert update_settled("app-1", status) is done


@pytest.mark.parametrize("state", ["paused", "rollback_started", "rollback_paused", "rollback_completed"])
def test_an_update_that_paused_or_rolled_back_is_an_error_naming_the_service_and_swarm_s_words(state):
    message = "update paused due to failure or early termination of task x1"
    with pytest.raises(StackError, match=f"app-2: .* stopped in state {state}: update paused due to failure"):
        update_settled("app-2", {"State": state, "Message": message})


def test_order_needs_a_swarm_and_a_known_value():
    refused(with_faults('kind = "rolling-restart"\norder = "start-first"\nat = 1'), "fault 1",
            "order = 'start-first'", "needs a [swarm] table")
    refused(with_faults('kind = "rolling-restart"\norder = "blue-green"\nat = 1') + SWARM, "unknown order",
            "'blue-green'", "start-first")
    refused(with_faults('kind = "kill-replica"\ntarget = "app-1"\norder = "start-first"\nat = 1') + SWARM,
            "order = 'start-first' does not fit kill-replica")


def test_a_drained_or_mixed_rolling_restart_is_refused_on_a_swarm_in_one_line():
    refused(with_faults('kind = "rolling-restart"\ndrain = true\nat = 1') + SWARM, "fault 1",
            "drain = true does not run on a Swarm")
    refused(with_faults('kind = "rolling-restart"\ntarget = "app-1"\nat = 1',
                        'kind = "rolling-restart"\ntarget = "app-2"\ngraceful = false\nat = 3') + SWARM,
            "graceful = true and graceful = false on a Swarm", "one for the run")
    with pytest.raises(ScenarioError, match="drain = true does not run on a Swarm"):
        on_swarm(parse('kind = "rolling-restart"\ndrain = true\nat = 1'))


def test_a_swarm_rolling_restart_names_its_order_and_delay_in_the_table():
    (f,) = on_a_swarm('kind = "rolling-restart"\norder = "start-first"\nstep_pause = 0.5\nat = 1').faults
    assert change_text(f, swarm=True) == ("rolling-restart all (start-first, SIGTERM, not drained, 1 at a time, "
                                          "delay 0.5s)")
    assert change_text(f) == "rolling-restart all (SIGTERM, not drained, 1 at a time, pause 0.5s)"
