"""Core NATS and JetStream on real containers: the headline workload through nats-server, and a broker
restart under each: what test_faults asserts of every fault scenario, and more, of the same runs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["nats", "nats-jetstream"])
def test_every_message_reaches_every_other_client_across_replicas_through_nats(name: str, run_once,
                                                                                nothing_left):
    result = run_once(name)
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert a.cross_delivered == a.cross_expected > 0 and a.lost == a.duplicated == 0
    assert "nats" in result.states and "redis" not in result.states
    assert result.versions["nats-server"].startswith("2.")
    if name == "nats-jetstream":
        assert {ack.seq for ack in result.history.acks} and None not in {ack.seq for ack in result.history.acks}


def test_core_nats_loses_only_inside_a_broker_restart(run_once, nothing_left):
    result = run_once("fault-nats-restart-broker")
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert a.lost_in_fault > 0 and a.lost_outside_fault == 0
    assert set(result.states.values()) == {"running"}


def test_jetstream_loses_nothing_through_a_broker_restart(run_once, nothing_left):
    result = run_once("fault-jetstream-restart-broker")
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert a.lost == a.duplicated == 0 and a.delivered == a.expected > 0
    assert [f.kind for f in result.history.faults] == ["restart-broker"]
