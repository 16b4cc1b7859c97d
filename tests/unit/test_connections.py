"""The connection-scale layout and the broadcast arithmetic, with literal inputs (no sockets, no Docker)."""

import pytest

from labs.bench.connections.load import cpu_share
from labs.bench.connections.plan import (
    Arrival,
    Layout,
    PlanError,
    Via,
    assign,
    median_of,
    nearest_limits,
    per_connection_bytes,
    plan_layout,
    room_name,
    round_figures,
    summarize,
    time_to_fraction,
)
from labs.bench.connections.report import bound, broadcast_totals, per_node, summary
from labs.bench.connections.run import nginx_config, nginx_reasons, node_load
from labs.bench.connections.setup import parse_count, parse_setup, parse_via
from labs.infra.redis_cluster import publish_calls
from labs.infra.sizing import capacity


def test_twenty_thousand_fit_under_a_20k_file_limit_with_room_to_spare():
    layout = plan_layout(20_000, fd_limit=20_000)
    assert layout == Layout(connections=20_000, fd_limit=20_000, load_processes=2, ports=8, nginx_workers=3,
                            worker_connections=19_000, replicas=2, ephemeral_ports=28_232, concurrency=80)
    # every process stays within 75% of the limit: 1 file per client in a load process and a replica,
    # 6 in a docker-proxy (two sockets, two splice pipes), 2 in an nginx worker
    assert layout.per("load") * 1 <= 15_000
    assert layout.per("proxy") * 6 <= 15_000
    assert layout.per("nginx") * 2 <= 15_000
    assert layout.per("replica") * 1 <= 15_000
    assert layout.listen_ports == (8080, 8081, 8082, 8083, 8084, 8085, 8086, 8087)


def test_a_hundred_thousand_spread_over_many_processes():
    layout = plan_layout(100_000, fd_limit=20_000)
    assert (layout.load_processes, layout.ports, layout.nginx_workers, layout.replicas) == (7, 40, 14, 7)
    assert layout.per("replica") == 14_286 and layout.per("proxy") == 2_500


def test_small_runs_still_use_two_replicas_two_workers_and_two_load_processes():
    layout = plan_layout(1, fd_limit=20_000)
    assert (layout.load_processes, layout.ports, layout.nginx_workers, layout.replicas) == (2, 1, 2, 2)


def test_a_lower_file_limit_means_more_processes():
    assert capacity("proxy", 4096) == 512
    assert plan_layout(20_000, fd_limit=4096).ports == 40


@pytest.mark.parametrize("n", [0, -5, 2.5, "20000", True])
def test_n_below_one_or_not_a_whole_number_is_refused(n):
    with pytest.raises(PlanError, match="at least 1"):
        plan_layout(n)


def test_n_beyond_what_the_layout_holds_is_refused_with_the_bound():
    with pytest.raises(PlanError, match=r"N=160001 is more than this layout holds .*at most 160000"):
        plan_layout(160_001, fd_limit=20_000)
    assert plan_layout(160_000, fd_limit=20_000).ports == 64


def test_too_few_ephemeral_ports_for_one_destination_is_refused():
    with pytest.raises(PlanError, match="10000 connections on one destination, more than the 5000 ephemeral"):
        plan_layout(20_000, fd_limit=20_000, ephemeral_ports=5_000)


def test_more_tracked_connections_than_the_conntrack_table_holds_is_refused_before_anything_starts():
    assert plan_layout(20_000, conntrack_max=60_000).connections == 20_000
    with pytest.raises(PlanError, match=r"needs ~300000 tracked connections \(published\) but the host's conntrack "
                                        r"table holds 262144; give a smaller N, --via bridge, or raise"):
        plan_layout(100_000, conntrack_max=262_144)


def test_shares_are_contiguous_and_even():
    assert assign(plan_layout(5, fd_limit=20_000)) == [(0, 3), (3, 2)]
    shares = assign(plan_layout(100_000, fd_limit=20_000))
    assert sum(c for _, c in shares) == 100_000 and {c for _, c in shares} == {14_285, 14_286}
    assert all(first == prev_first + prev_count
               for (prev_first, prev_count), (first, _) in zip(shares, shares[1:]))


def test_the_time_to_95_and_100_percent_counts_against_the_expected_receivers():
    delays = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0]
    assert time_to_fraction(delays, 20, 0.95) == 1.9
    assert time_to_fraction(delays, 20, 1.0) == 2.0
    assert time_to_fraction(list(reversed(delays)), 20, 0.5) == 1.0
    # one receiver short: 100% was never reached, 95% (19 of 20) was
    assert time_to_fraction(delays[:19], 20, 1.0) is None
    assert time_to_fraction(delays[:19], 20, 0.95) == 1.9
    assert time_to_fraction(delays[:18], 20, 0.95) is None
    with pytest.raises(ValueError):
        time_to_fraction(delays, 0, 0.95)


def test_a_broadcast_summary_reports_loss_and_duplicates():
    got = summarize(Arrival(expected=4, delays=(0.3, 0.1, 0.2), duplicates=1))
    assert got == {"expected": 4, "received": 3, "lost": 1, "duplicated": 1, "p50_s": 0.2, "t95_s": None,
                   "t100_s": None}


def test_medians_skip_broadcasts_that_never_got_there():
    assert median_of([3.0, None, 1.0, 2.0]) == 2.0
    assert median_of([None, None]) is None


def test_memory_per_connection_is_the_rss_delta_over_the_connections():
    assert per_connection_bytes(30_000_000, 30_000_000 + 10_000 * 16_384, 10_000) == 16_384
    assert per_connection_bytes(1, 2, 0) is None


def test_the_nearest_limit_comes_first_and_parts_without_a_figure_are_left_out():
    got = nearest_limits({"proxy files": (15_000, 20_000), "replica": (10_000, 20_000), "none": (-1, 20_000),
                          "memory": (3, 24)})
    assert got == [("proxy files", 0.75), ("replica", 0.5), ("memory", 0.125)]


def test_the_nginx_config_has_the_layouts_workers_ports_and_limits():
    conf = nginx_config(plan_layout(20_000, fd_limit=20_000))
    assert "worker_processes 3;" in conf and "worker_rlimit_nofile 20000;" in conf
    assert "worker_connections 19000;" in conf and "access_log off;" in conf
    assert "listen 8080 reuseport backlog=4096;" in conf and "listen 8087 reuseport backlog=4096;" in conf
    assert "listen 8088" not in conf
    assert "proxy_connect_timeout 5000ms;" in conf


def test_a_count_that_is_not_a_number_is_one_clear_error():
    assert parse_count("20_000") == 20_000
    with pytest.raises(PlanError, match="N='lots' is not a whole number"):
        parse_count("lots")


def _run(connected, lost, busy, errors=None, nacked=0):
    return {"connections": 10, "connected": connected, "failed": 10 - connected, "lost": lost, "duplicated": 0,
            "acked": 3 - nacked, "nacked": nacked, "unanswered": 0,
            "broadcasts": [{"closed_connections": {"1011": 2} if lost else {}}],
            "nginx_errors": {"no live upstreams": 5} if connected < 10 else {},
            "replica_counters": {"app-1": {"publish_failed": 2 * nacked, "deaf_detected": 0, "subscriber_rebuilds": 0}},
            "connect_rate": 100.0, "messages": 3, "p50_s": 0.5, "t95_s": 1.0, "t100_s": 2.0,
            "connect_errors": errors or {},
            "replicas": {"app-1": {"bytes_per_connection": 16_000.0}, "app-2": {"bytes_per_connection": None}},
            "cpu_share": {"connect": {"host busy": busy}}}


def test_the_bound_names_failures_first_then_the_nearest_limit_and_a_busy_cpu():
    limits = [("open files, busiest docker-proxy", 0.75), ("host memory", 0.1)]
    assert bound([_run(10, 0, 0.5)], limits) == "nothing failed; the nearest limit was open files, busiest docker-proxy at 75%"
    assert "CPU-bound" in bound([_run(10, 0, 0.97)], limits)
    text = bound([_run(8, 3, 0.97, {"InvalidStatus: HTTP 502": 2})], limits)
    assert text.startswith("2 connection(s) failed, 3 receipt(s) lost") and "HTTP 502 x2" in text
    assert "nginx says: no live upstreams x5" in text and "close code: {'1011': 2}" in text
    assert text.endswith("the host's CPU was 97% busy while connecting")


def test_nginx_error_reasons_are_counted_from_its_log():
    log = ("2026/11/25 [error] 29#29: *1 upstream timed out (110: Connection timed out) while connecting\n"
           "2026/11/25 [error] 29#29: *2 no live upstreams while connecting to upstream\n"
           "2026/11/25 [error] 30#30: *9 no live upstreams while connecting to upstream\n")
    assert nginx_reasons(log) == {"upstream timed out": 1, "no live upstreams": 2}
    assert nginx_reasons("") == {}


def test_the_summary_takes_medians_over_runs_and_totals_loss():
    s = summary([_run(10, 0, 0.5), _run(9, 2, 0.5), _run(10, 0, 0.5)])
    assert s["connected"] == 9 and s["lost"] == 2 and s["t95_s"] == 1.0 and s["bytes_per_connection"] == 16_000.0


def test_over_the_bridge_a_listen_port_is_bound_by_ephemeral_ports_not_by_docker_proxy():
    layout = plan_layout(100_000, fd_limit=20_000, via=Via.BRIDGE)
    assert (layout.ports, layout.nginx_workers, layout.replicas, layout.load_processes) == (5, 14, 7, 7)
    assert layout.per("proxy") == 20_000 <= 0.75 * 28_232
    # two tracked connections per client instead of three: 100k fits where it did not through docker-proxy
    assert plan_layout(100_000, conntrack_max=262_144, via=Via.BRIDGE).connections == 100_000


def test_an_unknown_way_in_is_one_clear_error():
    assert parse_via("bridge") is Via.BRIDGE
    with pytest.raises(PlanError, match="--via 'tunnel': give one of published, bridge"):
        parse_via("tunnel")


def test_cpu_shares_are_of_every_core_and_what_the_groups_did_not_use_is_everything_else():
    before = {"host busy": 100.0, "host total": 200.0, "load processes": 10.0, "replicas": 5.0}
    after = {"host busy": 118.0, "host total": 220.0, "load processes": 16.0, "replicas": 9.0}
    assert cpu_share(before, after) == {"host busy": 0.9, "load processes": 0.3, "replicas": 0.2,
                                        "everything else": 0.4}
    assert cpu_share(after, after) == {}


def test_a_round_counts_acknowledged_messages_only_and_times_each_from_its_own_send():
    at = {"b1-0": 10.0, "b1-1": 10.5, "b1-2": 11.0}
    answers = {"b1-0": "ack", "b1-1": "ack", "b1-2": "nack"}
    messages = [  # two load processes' views of the round
        {"b1-0": {"times": [10.1, 10.3], "expecting": 2, "duplicates": 0},
         "b1-1": {"times": [10.6], "expecting": 2, "duplicates": 1},
         "b1-2": {"times": [], "expecting": 2, "duplicates": 0}},
        {"b1-0": {"times": [10.2], "expecting": 1, "duplicates": 0},
         "b1-1": {"times": [10.9], "expecting": 1, "duplicates": 0}},
    ]
    got = round_figures(at, answers, messages)
    # b1.2 was refused: its 2 missing receipts are not loss; b1.1 is one short of its 3 members
    assert got["messages"] == 3 and (got["acked"], got["nacked"], got["unanswered"]) == (2, 1, 0)
    assert got["expected"] == 6 and got["received"] == 5 and got["lost"] == 1 and got["duplicated"] == 1
    assert got["p50_s"] == pytest.approx(0.2) and got["t95_s"] is None and got["t100_s"] is None


def test_a_round_with_nothing_acknowledged_has_no_times_and_no_loss():
    got = round_figures({"b1-0": 1.0}, {"b1-0": None}, [{"b1-0": {"times": [], "expecting": 5, "duplicates": 0}}])
    assert (got["unanswered"], got["expected"], got["lost"], got["t100_s"]) == (1, 0, 0, None)


def test_a_nacked_message_is_refused_not_lost_and_rounds_without_an_ack_are_left_out_of_the_times():
    rounds = [{"messages": 2, "acked": 2, "nacked": 0, "unanswered": 0, "lost": 0, "duplicated": 0,
               "p50_s": 0.5, "t95_s": 1.0, "t100_s": 1.5},
              {"messages": 2, "acked": 0, "nacked": 2, "unanswered": 0, "lost": 9, "duplicated": 0,
               "p50_s": None, "t95_s": None, "t100_s": None},
              {"messages": 2, "acked": 1, "nacked": 0, "unanswered": 1, "lost": 1, "duplicated": 0,
               "p50_s": 0.7, "t95_s": 3.0, "t100_s": None}]
    assert broadcast_totals(rounds) == {"messages": 6, "acked": 3, "nacked": 2, "unanswered": 1, "lost": 1,
                                        "duplicated": 0, "p50_s": 0.6, "t95_s": 2.0, "t100_s": 1.5}


def test_connections_spread_over_rooms_by_index_and_one_room_keeps_its_name():
    assert [room_name("r", 3, i) for i in range(5)] == ["r-0", "r-1", "r-2", "r-0", "r-1"]
    assert room_name("lobby", 1, 7) == "lobby"


def test_publish_calls_and_their_time_come_from_commandstats():
    text = ("# Commandstats\r\ncmdstat_spublish:calls=120,usec=960,usec_per_call=8.00,rejected_calls=0,"
            "failed_calls=0\r\ncmdstat_ping:calls=3,usec=1\r\ncmdstat_publish:calls=2,usec=30\r\n")
    assert publish_calls(text) == {"spublish": (120, 960), "publish": (2, 30)}
    assert publish_calls("# Commandstats\r\n") == {}


def test_node_load_is_the_difference_of_two_readings():
    before = {"redis-1": {"spublish": (100, 1000)}, "redis-2": {}}
    after = {"redis-1": {"spublish": (300, 2600)}, "redis-2": {}}
    got = node_load(before, after, {"redis-1": 0.02})
    assert got["redis-1"] == {"publishes": 200, "usec_per_publish": 8.0, "cpu_share": 0.02}
    assert got["redis-2"] == {"publishes": 0, "usec_per_publish": None, "cpu_share": None}


@pytest.mark.parametrize("words, message", [
    (("kafka", "round-robin", "1", "3"), "--broker 'kafka': give one of redis-pubsub"),
    (("redis-streams", "round-robin", "1", "3"), "broker 'redis-streams': this bench sets up"),
    (("redis-pubsub", "cookie", "1", "3"), "balance 'cookie': give round-robin or room"),
    (("redis-pubsub", "sticky", "1", "3"), "--balance 'sticky'"),
    (("redis-pubsub", "room", "0", "3"), "rooms 0: give 1..10000"),
    (("redis-cluster-sharded", "room", "200", "2"), "masters 2: a Redis Cluster here has 3..6"),
    (("redis-pubsub", "room", "many", "3"), "N='many' is not a whole number"),
])
def test_a_bad_setup_is_one_clear_error(words, message):
    with pytest.raises(PlanError) as info:
        parse_setup(*words)
    assert message in str(info.value)


def test_a_setup_names_its_broker_nodes():
    assert parse_setup("redis-cluster-sharded", "room", "200", "3").nodes == ["redis-1", "redis-2", "redis-3"]
    assert parse_setup("redis-pubsub", "round-robin", "1", "3").nodes == ["redis"]
    assert parse_setup("none", "room", "20", "3").nodes == []


def test_more_replicas_can_be_asked_for_but_not_fewer_than_n_needs():
    assert plan_layout(20_000, replicas=6).replicas == 6
    assert plan_layout(100_000, via=Via.BRIDGE, replicas=3).replicas == 7
    with pytest.raises(PlanError, match="replicas 33"):
        plan_layout(1000, replicas=33)


def test_per_node_takes_medians_over_runs_by_name():
    def run(cpu, publishes):
        return {"replicas": {"app-1": {"members": 10, "rooms": 4}},
                "nodes": {"redis": {"publishes": publishes, "usec_per_publish": 5.0, "cpu_share": cpu}},
                "cpu_share": {"broadcasts": {"app-1": cpu * 10, "redis": cpu}}}
    got = per_node([run(0.01, 100), run(0.03, 300), run(0.02, 200)])
    assert got["app-1"] == {"members": 10, "rooms": 4, "cpu_share": 0.2}
    assert got["redis"] == {"publishes": 200, "usec_per_publish": 5.0, "cpu_share": 0.02}


def test_the_bound_says_why_a_broadcast_was_refused():
    text = bound([_run(10, 0, 0.5, nacked=1)], [("host memory", 0.1)])
    assert "1 broadcast(s) nacked and 0 unanswered, replicas report publish_failed 2" in text


def test_setups_are_broker_colon_balance_and_each_once():
    from labs.bench.partitioning import SETUPS, parse_setups
    assert len(parse_setups(",".join(SETUPS), "200", "3")) == 6
    got = parse_setups("redis-pubsub:room, none:room", "20", "3")
    assert [(s.broker.value, s.balance.value, s.rooms) for s in got] == [("redis-pubsub", "room", 20),
                                                                          ("none", "room", 20)]
    with pytest.raises(PlanError, match="give broker:balance"):
        parse_setups("redis-pubsub", "20", "3")
    with pytest.raises(PlanError, match="names a setup twice"):
        parse_setups("none:room,none:room", "20", "3")


def _partition_run(app_cpu: float, publishes: int) -> dict:
    return {"connections": 100, "connected": 100,
            "replicas": {"app-1": {"members": 40, "rooms": 3}, "app-2": {"members": 60, "rooms": 2}},
            "nodes": {"redis": {"publishes": publishes, "usec_per_publish": 4.0, "cpu_share": 0.004}},
            "cpu_share": {"broadcasts": {"host busy": 0.9, "load processes": 0.5, "nginx": 0.1, "app-1": app_cpu,
                                         "app-2": app_cpu, "redis": 0.004}},
            "broadcast_s": 2.0,
            "broadcasts": [{"messages": 5, "acked": 5, "nacked": 0, "unanswered": 0, "lost": 0, "duplicated": 0,
                            "p50_s": 0.1, "t95_s": 0.2, "t100_s": 0.3}]}


def test_a_partitioning_row_says_how_the_connections_spread_and_what_each_part_used():
    from labs.bench.partitioning import markdown, row
    r = row(parse_setup("redis-pubsub", "room", "5", "3"), [_partition_run(0.1, 50), _partition_run(0.2, 70)])
    assert r["members_per_replica"] == [40, 60] and r["rooms_per_replica"] == 2.5
    assert r["replica_cpu"] == pytest.approx(0.3) and r["publishes"] == [60] and r["broker_cpu"] == [0.004]
    assert (r["messages"], r["acked"], r["lost"], r["t100_s"], r["round_s"]) == (10, 10, 0, 0.3, 2.0)
    text = markdown({"connections": 100, "rooms": 5, "replicas": 2, "runs": 2, "broadcasts": 1, "rows": [r],
                     "machine": {"cpus": 2, "platform": "p", "docker": "d", "python": "3"}})
    assert ("| one Redis (Pub/Sub), nginx room, 5 rooms | 100/100 | 40–60 | 2 | 0.10 s | 0.20 s | 0.30 s | 0 "
            "| 30% | 0.4% | 60 | 4.0 | 10% | 50% | 90% |") in text


def test_connections_closed_while_held_leave_out_those_closed_while_connecting():
    from labs.bench.connections.run import closed_since

    assert closed_since({"no close frame": 3}, {"no close frame": 3, "1011": 2}) == {"1011": 2}
    assert closed_since({}, {}) == {} and closed_since({"1011": 1}, {"1011": 4}) == {"1011": 3}


def test_a_sizing_with_its_balancer_is_written_as_json() -> None:
    import dataclasses
    import json

    from labs.bench.connections.report import plain
    from labs.infra.sizing import size_stack

    written = json.loads(json.dumps({"sizing": dataclasses.asdict(size_stack(3, fd_limit=20_000))}, default=plain))
    assert written["sizing"]["balancer"] == "nginx"
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        json.dumps({"x": object()}, default=plain)
