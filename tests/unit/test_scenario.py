import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.scenario import Balance, Balancer, Bound, Broker, Metric

GOOD = """
description = "d"
[topology]
replicas = 3
broker = "redis-pubsub"
[workload]
clients = 4
messages = 2
[expect]
lost = 0
delivered_ratio = { min = 0.5 }
"""


def parse(text: str):
    return scenario.parse(text, name="t")


def test_a_valid_scenario_parses_into_typed_values():
    s = parse(GOOD)
    assert s.topology.replicas == 3 and s.topology.broker is Broker.REDIS_PUBSUB
    assert s.workload.clients == 4 and s.workload.room == "lobby"
    assert s.expect[Metric.LOST] == Bound(0, 0)
    assert s.expect[Metric.DELIVERED_RATIO].holds(0.5) and not s.expect[Metric.DELIVERED_RATIO].holds(0.4)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("replicas = 3", "replicas = 0"), "replicas must be between 1 and 32, got 0"),
    (lambda t: t.replace("replicas = 3", "replicas = 33"), "replicas must be between 1 and 32, got 33"),
    (lambda t: t.replace("replicas = 3", 'replicas = "3"'), "replicas must be an integer"),
    (lambda t: t.replace('"redis-pubsub"', '"kafka"'), "unknown broker 'kafka'"),
    (lambda t: t.replace("[expect]\nlost = 0\ndelivered_ratio = { min = 0.5 }", ""), "missing table [expect]"),
    (lambda t: t.replace("lost = 0", "lots = 0"), "unknown expectation 'lots'"),
    (lambda t: t.replace("lost = 0", 'lost = "none"'), "expect.lost must be a number"),
    (lambda t: t.replace("clients = 4", "clients = 4\nclient = 5"), "unknown key 'client'"),
    (lambda t: t.replace("messages = 2", "messages = 2\nroom = 'a b'"), "room must match"),
    (lambda t: t + "\n[[", "not valid TOML"),
    (lambda t: t.replace("replicas = 3", 'replicas = 3\napp = "socketio"\nbalance = "room"'),
     'balance = "room" hashes the room named in the WebSocket URL'),
])
def test_malformed_scenarios_are_rejected_with_the_key_and_value(edit, message):
    with pytest.raises(ScenarioError, match=None) as info:
        parse(edit(GOOD))
    assert message in str(info.value)


def test_an_unknown_scenario_lists_the_known_ones(tmp_path):
    (tmp_path / "alpha.toml").write_text(GOOD)
    with pytest.raises(ScenarioError, match=r"unknown scenario 'beta' \(known: alpha\)"):
        scenario.load("beta", directory=tmp_path)


def test_a_scenario_name_cannot_reach_outside_the_directory(tmp_path):
    with pytest.raises(ScenarioError, match="bad scenario name"):
        scenario.load("../etc/passwd", directory=tmp_path)


def test_every_shipped_scenario_is_valid_and_declares_an_outcome():
    names = scenario.available()
    assert {"no-broker", "pubsub"} <= set(names)
    for name in names:
        assert scenario.load(name).expect


FAULTY = GOOD.replace("[expect]", """[[faults]]
kind = "kill-replica"
target = "app-2"
at = 0.5
heal_after = 0.5

[expect]""").replace("messages = 2", "messages = 100\nrate = 50")


def test_faults_parse_with_their_schedule():
    (fault,) = parse(FAULTY).faults
    assert (fault.kind.value, fault.target, fault.at, fault.heal_after) == ("kill-replica", "app-2", 0.5, 0.5)
    assert parse(FAULTY).workload.send_interval == 0.02


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('"app-2"', '"app-7"'), "no such replica"),
    (lambda t: t.replace('kind = "kill-replica"', 'kind = "restart-redis"'), "targets redis, got 'app-2'"),
    (lambda t: t.replace('kind = "kill-replica"', 'kind = "meteor"'), "unknown kind 'meteor'"),
    (lambda t: t.replace("at = 0.5", "at = 1.8"), "past the end of sending (2s"),
    (lambda t: t.replace("at = 0.5", "at = -1"), "at must be between 0 and 3600"),
    (lambda t: t.replace("rate = 50", "rate = -5"), "rate must be between 0.1 and 1000"),
    (lambda t: t.replace("rate = 50", "rate = 1e9"), "rate must be between 0.1 and 1000"),
    (lambda t: t.replace("rate = 50", "rate = 0.05"), "rate must be between 0.1 and 1000"),  # 20 s > send_interval max
    (lambda t: t.replace("broker = ", "maxlen = 0\nbroker = "), "maxlen must be between 1 and"),
    (lambda t: t.replace('broker = "redis-pubsub"', 'broker = "none"').replace('"kill-replica"', '"pause-redis"')
     .replace('"app-2"', '"redis"'), "needs a Redis broker"),
])
def test_bad_faults_and_rates_are_refused(edit, message):
    with pytest.raises(ScenarioError) as info:
        parse(edit(FAULTY))
    assert message in str(info.value)


def test_balance_room_is_taken_by_websocket_replicas():
    assert parse(GOOD.replace("replicas = 3", 'replicas = 3\nbalance = "room"')).topology.balance.value == "room"


def test_unsent_is_a_count_every_app_can_declare():
    s = parse(GOOD.replace("lost = 0", "unsent = 0"))
    assert s.expect[Metric.UNSENT] == Bound(0, 0)
    assert Metric.UNSENT in scenario.SOCKETIO_METRICS and Metric.UNSENT not in scenario.SOCKETIO_ONLY


def test_maxlen_is_taken_with_redis_streams():
    s = parse(GOOD.replace('"redis-pubsub"', '"redis-streams"\nmaxlen = 10'))
    assert s.topology.maxlen == 10


HAPROXY = GOOD.replace("replicas = 3", 'replicas = 3\nbalancer = "haproxy"')


def test_the_balancer_is_nginx_unless_haproxy_is_named_with_its_soft_stop_knobs():
    assert parse(GOOD).topology.balancer is Balancer.NGINX
    top = parse(HAPROXY.replace("replicas = 3", "replicas = 3\nhard_stop_after = 30\nclose_spread_time = 2.5")).topology
    assert (top.balancer, top.hard_stop_after, top.close_spread_time) == (Balancer.HAPROXY, 30.0, 2.5)
    assert parse(HAPROXY).topology.hard_stop_after is None and parse(HAPROXY).topology.close_spread_time is None
    assert Balancer.HAPROXY.config_file == "haproxy.cfg" and Balancer.NGINX.config_file == "nginx.conf"


def test_hash_consistent_is_a_policy_of_both_balancers():
    for text in (GOOD, HAPROXY):
        s = parse(text.replace("replicas = 3", 'replicas = 3\nbalance = "hash-consistent"'))
        assert s.topology.balance is Balance.HASH_CONSISTENT


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('"haproxy"', '"envoy"'), "unknown balancer 'envoy' (one of: nginx, haproxy)"),
    (lambda t: t.replace('"haproxy"', '"nginx"\nhard_stop_after = 30'),
     'topology.hard_stop_after = 30 is an HAProxy setting; this topology has balancer = "nginx"'),
    (lambda t: t.replace("replicas = 3", "replicas = 3\nclose_spread_time = 1").replace('balancer = "haproxy"\n', ""),
     'topology.close_spread_time = 1 is an HAProxy setting'),
    (lambda t: t.replace('"haproxy"', '"haproxy"\nhard_stop_after = 5\nclose_spread_time = 5'),
     "close_spread_time = 5 must be less than hard_stop_after = 5"),
    (lambda t: t.replace('"haproxy"', '"haproxy"\nhard_stop_after = 0'), "hard_stop_after must be between 0.001 and 3600"),
    (lambda t: t.replace('"haproxy"', '"haproxy"\nhard_stop_after = "30s"'), "hard_stop_after must be a number"),
    (lambda t: t.replace('"haproxy"', '"haproxy"\nclose_spread_time = nan'), "close_spread_time must be between"),
    (lambda t: t + "\n[swarm]\nnodes = 2\n", 'balancer = "haproxy" runs on one engine only'),
])
def test_a_balancer_setting_that_cannot_apply_is_refused_in_one_line(edit, message):
    with pytest.raises(ScenarioError) as info:
        parse(edit(HAPROXY))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_engine_swarm_refuses_haproxy_before_anything_starts():
    with pytest.raises(ScenarioError, match='balancer = "haproxy" runs on one engine only'):
        scenario.on_swarm(parse(HAPROXY))
