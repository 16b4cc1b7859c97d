"""The load step's accounting and the capacity ladder's rules, on literal tallies and steps."""

import pytest

from labs.load import ladder
from labs.load.tally import Tally, UserCounts, add_up


@pytest.fixture
def handlers():
    """A bench installs its own SIGINT and SIGTERM handlers: pytest's come back afterwards."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def counts(name, replica, sent, received, duplicates=0, latencies=()):
    t = Tally(name, replica=replica, sent=sent, acked=sent)
    for sender, seqs in received.items():
        for seq in seqs:
            t.received(sender, seq, latencies[0] if latencies else 1000)
    t.duplicates += duplicates
    return UserCounts.from_dict(t.to_dict())


def test_a_room_that_got_everything_loses_nothing():
    users = [counts("a", "app-1", 2, {"b": [1, 2]}), counts("b", "app-2", 2, {"a": [1, 2]})]
    c = add_up(users, expected_users=2, broker=True)
    assert (c.owed, c.delivered, c.lost, c.duplicated, c.unexpected) == (4, 4, 0, 0, 0)


def test_a_member_that_missed_one_message_is_one_lost():
    users = [counts("a", "app-1", 3, {"b": [1, 2, 3]}), counts("b", "app-2", 3, {"a": [1, 3]}),
             counts("c", "app-2", 0, {"a": [1, 2, 3], "b": [1, 2, 3]})]
    c = add_up(users, expected_users=3, broker=True)
    assert (c.owed, c.delivered, c.lost) == (12, 11, 1)


def test_a_user_that_never_joined_is_owed_everything_sent():
    users = [counts("a", "app-1", 2, {"b": [1, 2]}), counts("b", "app-2", 2, {"a": [1, 2]}),
             counts("c", "", 0, {})]
    c = add_up(users, expected_users=3, broker=True)
    assert (c.joined, c.owed, c.lost) == (2, 8, 4)


def test_a_user_whose_report_never_came_back_is_owed_everything_sent():
    users = [counts("a", "app-1", 2, {"b": [1, 2]}), counts("b", "app-2", 2, {"a": [1, 2]})]
    assert add_up(users, expected_users=3, broker=True).lost == 4


def test_without_a_broker_only_same_replica_members_are_owed_and_cross_deliveries_are_unexpected():
    users = [counts("a", "app-1", 2, {"b": [1, 2], "c": [1]}), counts("b", "app-1", 2, {"a": [1, 2]}),
             counts("c", "app-2", 2, {})]
    c = add_up(users, expected_users=3, broker=False)
    assert (c.owed, c.delivered, c.lost, c.unexpected) == (4, 4, 0, 1)


def test_a_frame_received_twice_is_a_duplicate_not_a_second_delivery():
    t = Tally("a", replica="app-1")
    t.received("b", 1, 500)
    t.received("b", 1, 700)
    u = UserCounts.from_dict(t.to_dict())
    assert (u.received, u.duplicates, u.latency_us.get_total_count()) == ({"b": 1}, 1, 1)


def test_latency_percentiles_come_from_the_merged_histograms():
    a = counts("a", "app-1", 0, {"b": [1]}, latencies=[2000])
    b = counts("b", "app-1", 0, {"a": [1]}, latencies=[40000])
    c = add_up([a, b], expected_users=2, broker=True)
    assert c.percentile_ms(50) == pytest.approx(2.0, rel=0.01)
    assert c.max_ms == pytest.approx(40.0, rel=0.01)


def test_nothing_delivered_has_no_percentiles():
    c = add_up([counts("a", "app-1", 1, {}), counts("b", "app-1", 1, {})], expected_users=2, broker=True)
    assert (c.percentile_ms(99), c.max_ms, c.lost) == (None, None, 2)


def step(offered, delivered, p99, lost=0, dropped=0, **extra):
    return {"offered": offered, "delivered_per_s": delivered, "p50_ms": p99 and p99 / 4, "p90_ms": p99,
            "p99_ms": p99, "max_ms": p99, "lost": lost, "dropped": dropped, "duplicated": 0, "unexpected": 0,
            "sent_per_s": offered, "generator_peak": 0.3, "generator_bound": False, "cpu": {"app-1": 0.5}, **extra}


def test_the_knee_is_the_most_deliveries_within_50_ms_and_no_loss():
    steps = [step(100, 1100, 3.0), step(200, 2200, 12.0), step(400, 4400, 49.0), step(700, 7000, 60.0),
             step(1000, 8000, 120.0)]
    assert ladder.knee(steps)["offered"] == 400
    assert ladder.unbroken_up_to(steps) is None


def test_past_the_given_rates_the_ladder_climbs_by_1_4_a_rung_up_to_its_ceiling():
    assert list(ladder.rungs([100, 200], 500)) == [100, 200, 280, 390, 500]
    assert list(ladder.rungs([4000, 5600]))[2:] == [7800, 11000, 15000, 21000, 29000, 41000, 57000, 80000, 100000]
    assert list(ladder.rungs([100, 200], 200)) == [100, 200]
    assert list(ladder.rungs([1, 2], 4)) == [1, 2, 3, 4]  # small rates still climb by at least one a rung
    with pytest.raises(ladder.LadderError):
        list(ladder.rungs([100, 600], 500))


def test_a_ladder_that_reached_its_ceiling_unbroken_has_no_knee_only_the_rate_it_held_up_to():
    steps = [step(4000, 44000, 8.0), step(5600, 61611, 12.0), step(7800, 85000, 30.0), step(100_000, 90000, 70.0)]
    assert ladder.unbroken_up_to(steps) == 100_000
    assert ladder.knee(steps) is None
    merged = ladder.median_steps([steps, steps])
    assert ladder.unbroken_up_to(merged) == 100_000 and ladder.knee(merged) is None


def test_one_run_that_broke_makes_the_ladder_broken_and_names_a_knee():
    held = [step(100, 1000, 10.0), step(200, 2000, 20.0)]
    merged = ladder.median_steps([held, [step(100, 1000, 10.0), step(200, 2000, 150.0)]])
    assert ladder.unbroken_up_to(merged) is None and ladder.knee(merged)["offered"] == 100
    assert ladder.unbroken_up_to([]) is None


def test_the_knee_cell_says_unbroken_up_to_the_ceiling_or_none_within_50_ms():
    from labs.bench.climb import broke_cell, knee_cell

    unbroken = {"knee": None, "unbroken_up_to": 100_000.0, "steps": [step(100_000, 90000, 70.0)]}
    assert knee_cell(unbroken) == "none: unbroken up to 100000 msg/s" and broke_cell(unbroken) == "-"
    slow = {"knee": None, "unbroken_up_to": None, "steps": [step(100, 1000, 60.0), step(200, 2000, 120.0)]}
    assert knee_cell(slow) == "none within 50 ms" and broke_cell(slow) == "200: p99 120.0 ms"
    knee = {"knee": step(100, 1000, 10.0), "unbroken_up_to": None, "steps": []}
    assert knee_cell(knee) == "1000 (100)"


def test_a_fast_step_that_lost_a_message_is_not_the_knee():
    steps = [step(100, 1100, 3.0), step(200, 2200, 4.0, lost=1)]
    assert ladder.knee(steps)["offered"] == 100


def test_no_step_within_50_ms_means_no_knee():
    assert ladder.knee([step(100, 1100, 51.0)]) is None


@pytest.mark.parametrize("s, broke", [(step(1, 1, 99.0), False), (step(1, 1, 101.0), True),
                                      (step(1, 1, 5.0, lost=1), True), (step(1, 1, 5.0, dropped=1), True),
                                      (step(1, 0, None), True)])
def test_the_ladder_stops_at_p99_over_100_ms_a_loss_a_drop_or_nothing_delivered(s, broke):
    assert ladder.broken(s) is broke


def test_medians_per_rate_keep_the_worst_loss():
    runs = [[step(100, 1000, 3.0), step(200, 2000, 10.0, lost=0)],
            [step(100, 1100, 5.0), step(200, 2100, 20.0, lost=3)],
            [step(100, 1200, 4.0)]]
    merged = ladder.median_steps(runs)
    assert [(m["offered"], m["delivered_per_s"], m["p99_ms"], m["lost"], m["runs"], m["of"]) for m in merged] == [
        (100, 1100, 4.0, 0, 3, 3), (200, 2050, 15.0, 3, 2, 3)]


def test_a_rate_two_of_three_runs_broke_below_is_not_the_knee():
    runs = [[step(700, 7000, 20.0), step(1000, 9000, 120.0)],
            [step(700, 7100, 22.0), step(1000, 9100, 10.0, lost=2)],
            [step(700, 7200, 21.0), step(1000, 10000, 30.0), step(1400, 14000, 40.0), step(2000, 15000, 130.0)]]
    merged = ladder.median_steps(runs)
    assert [(m["offered"], m["runs"], m["held"], m["of"]) for m in merged] == [
        (700, 3, 3, 3), (1000, 3, 1, 3), (1400, 1, 1, 3), (2000, 1, 0, 3)]
    assert [ladder.broken(m) for m in merged] == [False, True, True, True]
    assert not ladder.within_knee(merged[2])
    assert ladder.knee(merged)["offered"] == 700


def test_a_rate_one_run_broke_at_is_not_the_knee_even_when_the_median_p99_is_within_50_ms():
    runs = [[step(100, 1000, 10.0), step(200, 2000, 20.0)],
            [step(100, 1000, 10.0), step(200, 2000, 30.0)],
            [step(100, 1000, 10.0), step(200, 2000, 120.0)]]
    merged = ladder.median_steps(runs)
    assert merged[1]["p99_ms"] == 30.0 and merged[1]["held"] == 2
    assert ladder.broken(merged[1]) and ladder.knee(merged)["offered"] == 100
    assert ladder.why_broken(merged[1]) == "200: 1 of 3 runs broken"


def test_why_a_merged_step_broke_names_the_loss_and_the_runs_broken_by_then():
    runs = [[step(100, 1000, 10.0, lost=4)], [step(100, 1000, 10.0), step(200, 2000, 150.0)]]
    merged = ladder.median_steps(runs)
    assert ladder.why_broken(merged[0]) == "100: lost 4, 1 of 2 runs broken"
    assert ladder.why_broken(merged[1]) == "200: p99 150.0 ms, 2 of 2 runs broken"
    assert ladder.why_broken(step(400, 0, None)) == "400: nothing delivered"


@pytest.mark.parametrize("text", ["", "pubsub,kafka", "nats"])
def test_an_unknown_pattern_is_refused(text):
    with pytest.raises(ladder.LadderError, match="unknown pattern"):
        ladder.patterns(text)


@pytest.mark.parametrize("text", ["100,50", "0,100", "a,b", "100,100"])
def test_rates_must_be_increasing_numbers_in_range(text):
    with pytest.raises(ladder.LadderError):
        ladder.numbers(text, "rates", 1, 100_000)


def test_the_bottleneck_names_the_busiest_process():
    s = step(1, 1, 1.0, cpu={"app-1": 0.9, "generator": 0.4}, host_cpu=1.9, machine_cores=2)
    assert ladder.bottleneck(s) == "app-1 0.90 cores (lab processes: 1.30; machine: 1.90 of 2 busy)"


@pytest.mark.parametrize("argv, words", [(["--patterns", "kafka"], "unknown pattern kafka"),
                                          (["--replicas", "0,2"], "bad replica counts"),
                                          (["--rates", "400,200"], "bad rates"),
                                          (["--rates", "100,200", "--ceiling", "150"], "bad ceiling 150"),
                                          (["--ceiling", "200000"], "bad ceiling 200000"),
                                          (["--processes", "0"], "processes must be")])
def test_bad_bench_input_is_one_line_and_exit_2_before_anything_starts(argv, words, handlers, capsys):
    from labs.bench.__main__ import main

    assert main(["capacity", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


@pytest.mark.parametrize("second, words", [(step(100, 1090, 30.0), "unchanged"), (step(100, 1100, 5.0), "faster"),
                                           (step(100, 1100, 90.0), "slower"), (step(100, 700, 20.0), "slower")])
def test_one_more_generator_process_says_who_was_the_limit(second, words):
    assert ladder.headroom(step(100, 1100, 20.0), second).startswith(words)


def test_the_node_drivers_latency_pairs_merge_like_a_histogram():
    # users.mjs reports [microseconds, count] pairs at three significant digits
    u = UserCounts.from_dict({"name": "a", "replica": "app-1", "sent": 0, "acked": 0,
                              "received": {"b": 4}, "latency_counts": [[1230, 3], [45600, 1]]})
    assert u.latency_us.get_total_count() == 4
    assert u.latency_us.get_value_at_percentile(50) // 10 == 123 and u.latency_us.get_max_value() // 100 == 456


def test_the_replica_ratio_is_python_over_node_and_needs_both_knees():
    from labs.bench.replicas import ratio, replica_us_per_delivery

    knee = lambda d: {"delivered_per_s": d}  # noqa: E731
    assert ratio([{"implementation": "python", "knee": knee(20_000)}, {"implementation": "node", "knee": knee(40_000)}]) == 0.5
    assert ratio([{"implementation": "python", "knee": None}, {"implementation": "node", "knee": knee(40_000)}]) is None
    # 3 replicas at 0.2 cores each for 10,000 deliveries/s: 60 µs of replica CPU per delivery
    step = {"delivered_per_s": 10_000, "cpu": {"app-1": 0.2, "app-2": 0.2, "app-3": 0.2, "redis": 0.1, "generator": 0.3}}
    assert round(replica_us_per_delivery(step), 6) == 60.0


@pytest.mark.parametrize("argv, words", [
    (["--variants", "go"], "bad variant 'go'"),
    (["--knee-runs", "30"], "bad knee runs 30"),
    (["--cost-rates", "800,200"], "bad cost rates"),
    (["--rates", "400,200"], "bad rates"),
    (["--users", "1"], "users 2..1000"),
])
def test_bad_replica_bench_input_is_one_line_and_exit_2(argv, words, handlers, capsys):
    from labs.bench.__main__ import main

    assert main(["replicas", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_load_spec_refuses_an_unknown_driver_a_bad_host_and_socketio_on_node():
    from labs.load.step import LoadError, LoadSpec

    for kwargs in ({"driver": "k6"}, {"host": "nginx; rm -rf /"}, {"driver": "node", "user_class": "SocketIOUser"}):
        with pytest.raises(LoadError):
            LoadSpec(users=2, **kwargs)
