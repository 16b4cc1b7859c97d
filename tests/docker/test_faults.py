"""Every fault scenario on real containers: the declared outcome holds, every fault is healed."""

from __future__ import annotations

import pytest

from labs import scenario
from labs.accounting.history import History
from labs.scenario import Broker, FaultKind

FAULT_SCENARIOS = [name for name in scenario.available() if name.startswith("fault-")]


@pytest.mark.parametrize("name", FAULT_SCENARIOS)
def test_a_fault_scenario_matches_its_declared_outcome(name: str, run_once, nothing_left):
    """(run_once also checks that no two calls at once could each empty a member of one network.)"""
    s = scenario.load(name)
    result = run_once(name)
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert [f.kind for f in result.history.faults] == [f.kind.value for f in s.faults]
    assert all(f.healed is not None and f.healed >= f.applied for f in result.history.faults)
    assert set(result.states.values()) == {"running"}, result.states
    assert a.sent == s.workload.clients * s.workload.messages
    if s.topology.broker in {Broker.REDIS_STREAMS, Broker.NATS_JETSTREAM}:
        assert a.lost == a.trimmed and a.duplicated == 0
    else:
        assert a.lost_outside_fault == 0
    if s.topology.broker is Broker.REDIS_PUBSUB:
        _subscriber_outage_is_reported(result.history, s)


def _subscriber_outage_is_reported(history: History, s: scenario.Scenario) -> None:
    """A replica cut off Redis says its subscriber broke during the cut and worked again after it. Its old
    connection can stay silent for seconds after the heal (TCP backs off) and a rebuild then drops what it
    held: without the report, the window would end with the publisher's recovery and count that as a loss
    outside the fault."""
    for f, fault in zip(history.faults, s.faults):
        if fault.kind is not FaultKind.PARTITION_REPLICA:
            continue
        events = [(e.at, e.working) for e in history.broker_events
                  if e.replica == fault.target and e.part == "subscriber"]
        broke = [at for at, working in events if not working and f.applied <= at <= f.healed]
        assert broke, events
        # it works again after it broke (a beat heard before the cut took full effect can come before the heal)
        assert any(working and at > broke[0] for at, working in events), events
