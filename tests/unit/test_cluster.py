"""Redis Cluster brokers without Docker: what a cluster scenario may say, the rooms a workload spreads its
clients over, how the lab lays out and reads its nodes, and what a cluster run measured."""

import math

import pytest

from labs.accounting.checker import account
from labs.accounting.cluster import cluster_measures, resubscribe_times
from labs.accounting.history import (
    BrokerEvent,
    ClientRecord,
    History,
    Received,
    Sent,
    Session,
)
from labs.app.cluster import node_urls, replica_number
from labs.app.slots import parse_slots
from labs.errors import ScenarioError
from labs.infra import redis_cluster
from labs.scenario import Broker, FaultKind, Metric, Workload, parse

BASE = """
[topology]
replicas = 3
broker = "redis-cluster-sharded"
{top}
[workload]
clients = 20
messages = 100
rate = 20
{wl}
[expect]
lost = 0
{expect}
{faults}
"""
KILL = """
[[faults]]
kind = "kill-cluster-master"
target = "{target}"
at = 1.0
heal_after = 1.0
"""


def scenario_text(top: str = "", wl: str = "", expect: str = "", faults: str = "") -> str:
    return BASE.format(top=top, wl=wl, expect=expect, faults=faults)


def refused(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse(text, name="c")
    message = str(info.value)
    assert "\n" not in message and message.startswith("c")
    return message


# -- what a cluster scenario may say --------------------------------------------------------------------

def test_a_cluster_scenario_with_replicas_and_a_master_kill_parses():
    s = parse(scenario_text(top="cluster_replicas = 1", wl="rooms = 10",
                            expect="resubscribe_max_s = { max = 10 }", faults=KILL.format(target="redis-2")),
              name="c")
    assert s.topology.broker is Broker.REDIS_CLUSTER_SHARDED and s.topology.broker.cluster
    assert (s.topology.cluster_masters, s.topology.cluster_replicas, s.topology.cluster_nodes) == (3, 1, 6)
    assert s.faults[0].kind is FaultKind.KILL_CLUSTER_MASTER and s.faults[0].target == "redis-2"
    assert Metric.RESUBSCRIBE_MAX_S in s.expect


def test_a_cluster_smaller_than_three_masters_is_refused_in_one_line():
    assert "needs at least 3 masters" in refused(scenario_text(top="cluster_masters = 2"))


@pytest.mark.parametrize("top, expect, faults, words", [
    ("", "", KILL.format(target="redis-4"), "needs target redis-1..redis-3"),
    ("", "", KILL.format(target="redis-1"), "needs cluster_replicas >= 1"),
    ("cluster_replicas = 1", "", KILL.format(target="app-1"), "(a master), got 'app-1'"),
    ("cluster_replicas = 3", "", "", "cluster_replicas must be between 0 and 2"),
    ("cluster_masters = 7", "", "", "cluster_masters must be between 3 and 6"),
], ids=["replica-target", "no-replica-to-promote", "app-target", "too-many-replicas", "too-many-masters"])
def test_bad_cluster_topologies_and_faults_are_refused(top, expect, faults, words):
    assert words in refused(scenario_text(top=top, expect=expect, faults=faults))


def test_cluster_keys_metrics_and_faults_need_a_cluster_broker():
    single = scenario_text().replace('"redis-cluster-sharded"', '"redis-pubsub"')
    assert "only the redis-cluster-* brokers use it" in refused(
        single.replace("replicas = 3\n", "replicas = 3\ncluster_masters = 3\n", 1))
    assert "measured on a Redis Cluster only" in refused(single.replace("lost = 0", "bus_bytes_per_message = 0"))
    assert "needs a redis-cluster-* broker" in refused(single + KILL.format(target="redis-1"))


def test_a_single_redis_fault_on_a_cluster_is_refused():
    fault = '[[faults]]\nkind = "restart-redis"\nat = 1.0\nheal_after = 1.0\n'
    assert "kill-cluster-master" in refused(scenario_text(faults=fault))


def test_rooms_must_each_get_a_client_and_only_the_websocket_app_spreads_clients():
    assert "rooms = 21 is more than clients = 20" in refused(scenario_text(wl="rooms = 21"))
    sio = scenario_text(wl="rooms = 2").replace('broker = "redis-cluster-sharded"',
                                                 'broker = "redis-pubsub"\napp = "socketio"')
    assert "workload.rooms = 2 is ignored" in refused(sio)


# -- rooms ----------------------------------------------------------------------------------------------

def test_clients_are_spread_over_rooms_round_robin():
    w = Workload(clients=7, rooms=3, room="r")
    assert [w.room_for(i) for i in range(7)] == ["r-0", "r-1", "r-2", "r-0", "r-1", "r-2", "r-0"]
    assert w.room_sizes() == [3, 2, 2]
    assert Workload(clients=4, room="lobby").room_for(3) == "lobby"


def test_a_message_is_expected_only_in_its_senders_room():
    # a and b share room x, c is alone in room y: a's message is due at b only, c's at nobody
    h = History(clients=[ClientRecord("a", True, 1, room="x"), ClientRecord("b", True, 0, room="x"),
                         ClientRecord("c", True, 1, room="y")],
                sessions=[Session("a", "app-1", 0.0), Session("b", "app-2", 0.0), Session("c", "app-3", 0.0)],
                sent=[Sent("a-1", "a", 1.0), Sent("c-1", "c", 1.0)],
                received=[Received("a-1", "b", 1.01, "app-1")])
    acc = account(h)
    assert (acc.expected, acc.delivered, acc.lost, acc.cross_expected) == (1, 1, 0, 1)


def test_an_unsent_message_is_lost_only_in_its_senders_room():
    h = History(clients=[ClientRecord("a", True, 1, room="x"), ClientRecord("b", True, 0, room="x"),
                         ClientRecord("c", True, 0, room="y")],
                sessions=[Session("a", "app-1", 0.0), Session("b", "app-2", 0.0), Session("c", "app-3", 0.0)])
    acc = account(h)
    assert (acc.unsent, acc.expected, acc.lost) == (1, 1, 1)


# -- the cluster's layout ---------------------------------------------------------------------------------

def test_slots_are_split_into_contiguous_ranges_covering_all_16384():
    for masters in (3, 4, 5, 6):
        ranges = redis_cluster.slot_ranges(masters)
        assert ranges[0][0] == 0 and ranges[-1][1] == redis_cluster.SLOTS - 1
        assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:]))
        sizes = [hi - lo + 1 for lo, hi in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_replicas_follow_the_masters_in_turn():
    assert redis_cluster.node_names(3, 1) == [f"redis-{i}" for i in range(1, 7)]
    assert [redis_cluster.master_of(i, 3) for i in range(1, 10)] == [1, 2, 3, 1, 2, 3, 1, 2, 3]


def test_every_node_is_a_cluster_node_on_the_bus_announcing_its_name():
    nodes = redis_cluster.cluster_backends("img", 3, 1)
    assert [n.name for n in nodes] == redis_cluster.node_names(3, 1)
    for n in nodes:
        args = " ".join(n.command)
        assert "--cluster-enabled yes" in args and "--cluster-config-file /tmp/nodes.conf" in args
        assert f"--cluster-announce-hostname {n.name}" in args
        assert "--cluster-preferred-endpoint-type hostname" in args
        assert n.networks == (redis_cluster.BUS,)
    assert redis_cluster.broker_url(3) == "redis://redis-1:6379/0,redis://redis-2:6379/0,redis://redis-3:6379/0"


def test_cluster_info_nodes_and_interface_counters_are_parsed():
    info = redis_cluster.parse_info("# Cluster\r\ncluster_state:ok\r\ncluster_known_nodes:6\r\n")
    assert info == {"cluster_state": "ok", "cluster_known_nodes": "6"}
    nodes = ("a1b2 192.168.0.5:6379@16379,redis-4 slave e7d1 0 1700000000000 1 connected\n"
             "e7d1 192.168.0.2:6379@16379,redis-1 myself,master - 0 0 1 connected 0-5460\n")
    assert redis_cluster.myself_flags(nodes) == ["myself", "master"]
    assert redis_cluster.myself_flags(nodes.replace("myself,master", "master")) == []
    counters = redis_cluster.parse_counters("02:42:C0:A8:00:02 1000 2000\n00:00:00:00:00:00 5 5\nbad line\n")
    assert counters == {"02:42:c0:a8:00:02": (1000, 2000), "00:00:00:00:00:00": (5, 5)}


def test_a_replica_uses_its_own_master_for_classic_pubsub():
    urls = node_urls(redis_cluster.broker_url(3))
    assert len(urls) == 3
    assert [urls[(replica_number(f"app-{n}") - 1) % 3] for n in (1, 2, 3, 4)] == [
        urls[0], urls[1], urls[2], urls[0]]
    with pytest.raises(ValueError):
        node_urls(" , ")


def test_cluster_slots_give_each_range_its_masters_announced_name():
    reply = [[0, 5460, [b"redis-4", 6379, b"id4", []], [b"redis-1", 6379, b"id1", []]],
             [5461, 10922, [b"redis-2", 6379, b"id2", []]]]
    assert parse_slots(reply) == [(0, 5460, ("redis-4", 6379)), (5461, 10922, ("redis-2", 6379))]
    assert parse_slots([]) == []


# -- what a cluster run measured --------------------------------------------------------------------------

def test_bus_bytes_per_message_count_each_byte_once_by_its_sender():
    h = History(sent=[Sent(f"m{i}", "a", 1.0) for i in range(4)],
                probes={"cluster": {"nodes": {"redis-1": {"bus_tx": 3000, "bus_rx": 1000},
                                              "redis-2": {"bus_tx": 1000, "bus_rx": 3000}}}})
    assert cluster_measures(h)[Metric.BUS_BYTES_PER_MESSAGE] == 1000.0
    assert cluster_measures(History(sent=h.sent))[Metric.BUS_BYTES_PER_MESSAGE] is None


def test_resubscribe_time_runs_from_each_break_to_its_recovery_and_never_is_infinite():
    events = [BrokerEvent("app-1", 1.0, "subscriber", False), BrokerEvent("app-2", 1.5, "subscriber", False),
              BrokerEvent("app-1", 1.2, "publisher", False), BrokerEvent("app-1", 4.0, "subscriber", True)]
    assert resubscribe_times(History(broker_events=events)) == [3.0, math.inf]
    healed = events + [BrokerEvent("app-2", 3.0, "subscriber", True)]
    assert cluster_measures(History(broker_events=healed))[Metric.RESUBSCRIBE_MAX_S] == 3.0
    assert cluster_measures(History())[Metric.RESUBSCRIBE_MAX_S] is None  # nothing broke: nothing timed


def test_the_line_under_the_table_compares_the_bus_bytes_of_each_pair():
    from labs import scenario
    from labs.accounting.checker import Accounting
    from labs.protocols.base import Outcome
    from labs.protocols.cluster_cells import bytes_notes, cluster_columns

    def outcome(name: str, bus_tx: int) -> Outcome:
        node = {"role": "master", "bus_tx": bus_tx, "bus_rx": bus_tx, "back_tx": 10, "back_rx": 10, "cpu_s": 0.5}
        h = History(probes={"cluster": {"window_s": 10.0, "nodes": {"redis-1": node}}})
        return Outcome(scenario.load(name), h, Accounting(sent=100))

    classic, sharded = outcome("cluster-rooms-pubsub", 600_000), outcome("cluster-rooms-sharded", 30_000)
    [line] = bytes_notes([classic, sharded])
    assert line.startswith("cluster-rooms-sharded bus bytes/msg 300 = 0.05x cluster-rooms-pubsub's 6,000 (200 rooms")
    assert bytes_notes([classic]) == []
    cells = cluster_columns(sharded)
    assert cells["bus bytes/msg"] == "300" and cells["node CPU s, bytes"] == "redis-1 0.50s 0.1MB"


def test_a_restarted_node_is_measured_from_its_restart_and_its_cpu_is_unknown():
    before = {"redis-1": redis_cluster.NodeReading((100, 200), (10, 20), 5.0, {"ping_sent": 3}, "master", "t0"),
              "redis-2": redis_cluster.NodeReading((100, 200), (10, 20), 5.0, {"ping_sent": 3}, "master", "t0")}
    after = {"redis-1": redis_cluster.NodeReading((40, 60), (1, 2), 0.5, {"ping_sent": 1}, "slave", "t1"),
             "redis-2": redis_cluster.NodeReading((150, 300), (30, 50), 5.5, {"ping_sent": 5}, "master", "t0")}
    meter = redis_cluster.Meter(stack=None, names=["redis-1", "redis-2"], before=before)  # type: ignore[arg-type]
    meter._read_all = lambda: after  # type: ignore[method-assign]
    nodes = meter.end()["nodes"]
    assert nodes["redis-1"] == {"role": "slave", "bus_rx": 40, "bus_tx": 60, "back_rx": 1, "back_tx": 2,
                                "cpu_s": None, "restarted": True, "bus_messages_sent": {"ping": 1}}
    assert (nodes["redis-2"]["bus_tx"], nodes["redis-2"]["cpu_s"], nodes["redis-2"]["restarted"]) == (100, 0.5, False)
    assert nodes["redis-2"]["bus_messages_sent"] == {"ping": 2}
