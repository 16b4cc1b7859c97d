"""The storm bench's pure parts: its settings, and what a wave's records say (recovery, peaks, refusals, the
broadcast room's loss, the meter's SUBSCRIBE counts, cores), from literal records."""

import pytest

from labs.bench.connections.plan import PlanError, Via
from labs.bench.storm import wave
from labs.bench.storm.client import outcome_of, room_of
from labs.bench.storm.plan import Setting, Trigger, parse_settings, parse_target, parse_trigger
from labs.bench.storm.report import busiest, markdown, others, row
from labs.bench.storm.run import parse_down

T0 = 100.0
#: [client, started, ended, outcome, replica]; c1 and c2 were on app-1, c3 on app-2, c4 on app-3
RAMP = [[1, 1.0, 1.1, "ok", "app-1"], [2, 1.0, 1.2, "ok", "app-1"], [3, 1.0, 1.3, "ok", "app-2"],
        [4, 1.0, 1.4, "ok", "app-3"]]
WAVE = [[1, 101.0, 101.4, "http 502", ""], [1, 103.0, 103.5, "ok", "app-2"],
        [2, 101.0, 101.2, "ok", "app-3"],
        [4, 101.0, 111.0, "timeout", ""], [4, 112.0, 112.1, "reset", ""]]
#: c1 and c2 dropped when app-1 died; c4 too and never came back; c3 dropped once before the trigger
DROPS = [[3, 50.0, "1006"], [1, 100.01, "no close frame"], [2, 100.02, "no close frame"],
         [4, 100.03, "no close frame"]]
ATTEMPTS = RAMP + [[3, 50.5, 50.6, "ok", "app-2"]] + WAVE


def test_a_peak_is_the_most_events_in_any_one_second():
    assert wave.peak_rate([0.0, 0.1, 0.5, 1.05, 1.2, 5.0]) == 3
    assert wave.peak_rate([0.0, 0.999, 1.0]) == 2
    assert wave.peak_rate([]) == 0


def test_recovery_counts_the_clients_that_dropped_after_the_trigger_and_when_each_was_back():
    back = wave.back_times(ATTEMPTS, DROPS, T0)
    assert back == {1: pytest.approx(3.5), 2: pytest.approx(1.2), 4: None}
    r = wave.recovery(ATTEMPTS, DROPS, T0)
    assert (r["dropped"], r["back"], r["never_back"]) == (3, 2, 1)
    assert r["back_50_s"] == pytest.approx(3.5)  # 2 of 3 needed: the second back
    assert r["back_100_s"] is None  # one never came back: never a number


def test_a_welcome_before_the_drop_does_not_bring_a_client_back():
    attempts = [[1, 99.0, 99.5, "ok", "app-1"]]
    assert wave.back_times(attempts, [[1, 100.1, "1006"]], T0) == {1: None}


def test_attempt_times_cover_the_welcomed_attempts_after_the_trigger():
    assert wave.attempt_times(ATTEMPTS, T0) == {"attempt_p50_s": 0.2, "attempt_p95_s": 0.5, "attempt_max_s": 0.5}
    assert wave.attempt_times(RAMP, T0)["attempt_max_s"] is None


def test_refusals_are_counted_by_kind_from_the_trigger_on():
    assert wave.refusals(ATTEMPTS, T0) == {"http 502": 1, "timeout": 1, "reset": 1}
    assert wave.refusals(ATTEMPTS + [[9, 99.0, 99.1, "http 503", ""]], T0) == {"http 502": 1, "timeout": 1, "reset": 1}


def test_handshake_peaks_split_by_the_replica_that_welcomed_the_client():
    p = wave.handshake_peaks(ATTEMPTS, T0, ["app-1", "app-2", "app-3"])
    assert p["attempts"] == 5 and p["accepted"] == 2 and p["attempts_peak_per_s"] == 3
    assert p["replica_accepted"] == {"app-1": 0, "app-2": 1, "app-3": 1}
    assert p["replica_peak_per_s"] == {"app-1": 0, "app-2": 1, "app-3": 1}


def test_drops_are_counted_by_close_code_and_attempts_by_second_and_outcome():
    assert wave.drop_codes(DROPS, T0) == {"no close frame": 3}
    bins = wave.timeline(ATTEMPTS, T0, end=3.0)
    assert [b["t"] for b in bins] == [0.0, 1.0, 2.0, 3.0]
    assert [b["started"] for b in bins] == [0, 3, 0, 1]
    assert bins[1]["ended"] == {"http 502": 1, "ok": 1} and bins[3]["ended"] == {"ok": 1}


def test_the_host_cpu_no_measured_process_explains_is_what_is_left():
    cores = {"host busy": {"mean": 1.9, "peak": 2.0}, "host total": {"mean": 2.0, "peak": 2.0},
             "app-1": {"mean": 0.5, "peak": 1.0}, "nginx": {"mean": 0.4, "peak": 0.6}}
    assert others(cores) == 1.0 and others({}) is None


def test_connections_per_replica_follow_welcomes_and_drops():
    s = wave.open_series(ATTEMPTS, DROPS, ["app-1", "app-2", "app-3"], T0, start=-1.0, end=4.0, step=1.0)
    assert s["t"] == [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert s["app-1"] == [2, 2, 0, 0, 0, 0]
    assert s["app-2"] == [1, 1, 1, 1, 1, 2]
    assert s["app-3"] == [1, 1, 0, 1, 1, 1]


#: the broadcast room: clients 0, 5 and 10; 0 sends. 5 stays connected; 10 drops at 104 and is back at 106
SPANS = {0: [(1.0, None)], 5: [(1.0, None)], 10: [(1.0, 104.0), (106.0, None)]}
SENT = [["t1", 101.0, 0], ["t2", 103.5, 0], ["t3", 105.0, 0], ["t4", 107.0, 0], ["t0", 99.0, 0]]
ACKED = {f"t{n}": "ack" for n in range(5)}


def test_the_broadcast_room_owes_only_what_was_sent_while_a_member_stayed_connected():
    receipts = {"t1": [[5, 101.01], [10, 101.01]], "t2": [[5, 103.6]], "t3": [[5, 105.1]], "t4": [[5, 107.1], [10, 107.1]]}
    loss = wave.ticker_loss(SENT, receipts, ACKED, [0, 5, 10], SPANS, since=T0, until=110.0)
    # 10's first connection dropped at 104: t1 and t2 went to a doomed connection (cut), t3 while it was away
    assert loss == {"messages": 4, "owed": 5, "delivered": 5, "lost": 0, "missed_away": 1, "cut": 2, "duplicated": 0,
                    "unacked": 0, "lost_members": 0, "lost_sent_s": None}


def test_a_message_a_connected_member_never_got_is_lost_and_a_second_copy_is_counted():
    receipts = {"t1": [[5, 101.01], [10, 101.01]], "t2": [[5, 103.6]], "t3": [[5, 105.1], [5, 105.2]],
                "t4": [[5, 107.1]]}
    loss = wave.ticker_loss(SENT, receipts, ACKED, [0, 5, 10], SPANS, since=T0, until=110.0)
    assert loss["lost"] == 1 and loss["delivered"] == 4 and loss["duplicated"] == 1
    assert loss["lost_members"] == 1 and loss["lost_sent_s"] == [7.0, 7.0]


def test_a_message_the_senders_replica_never_acknowledged_is_unacked_not_lost_by_everyone():
    """The sender wrote t3 to a connection that had died: nobody got it, and nobody is owed it."""
    receipts = {"t1": [[5, 101.01], [10, 101.01]], "t2": [[5, 103.6]], "t4": [[5, 107.1], [10, 107.1]]}
    loss = wave.ticker_loss(SENT, receipts, {**ACKED, "t3": "nack"}, [0, 5, 10], SPANS, since=T0, until=110.0)
    assert loss["unacked"] == 1 and loss["lost"] == 0 and loss["owed"] == 4
    assert wave.ticker_loss(SENT, receipts, ACKED, [0, 5, 10], SPANS, since=T0, until=110.0)["lost"] == 1


def test_broadcast_delays_are_measured_from_send_to_receipt_and_none_without_receipts():
    receipts = {"t1": [[5, 101.01], [10, 101.03]], "t2": [[5, 103.7]], "t0": [[5, 99.5]]}
    d = wave.ticker_delays(SENT, receipts, since=T0, until=110.0)
    assert d == {"delay_p50_s": 0.03, "delay_p99_s": 0.2, "delay_max_s": 0.2}
    assert wave.ticker_delays(SENT, {}, since=T0, until=110.0)["delay_max_s"] is None


LOG = """2026-12-06T01:00:00.100000000Z meter ready
2026-12-06T01:00:00.200000000Z 1765000000
2026-12-06T01:00:00.200000000Z 250000
2026-12-06T01:00:00.200000000Z # Commandstats
2026-12-06T01:00:00.200000000Z cmdstat_subscribe:calls=10,usec=30,usec_per_call=3.00,rejected_calls=0,failed_calls=0
2026-12-06T01:00:00.200000000Z cmdstat_publish:calls=4,usec=8,usec_per_call=2.00
2026-12-06T01:00:00.500000000Z 1765000000
2026-12-06T01:00:00.500000000Z 750000
2026-12-06T01:00:00.500000000Z # Commandstats
2026-12-06T01:00:00.500000000Z cmdstat_subscribe:calls=510,usec=900,usec_per_call=1.76
2026-12-06T01:00:01.000000000Z 1765000001
2026-12-06T01:00:01.000000000Z 250000
2026-12-06T01:00:01.000000000Z cmdstat_subscribe:calls=610,usec=1000,usec_per_call=1.6
"""


def test_the_meter_log_becomes_samples_on_the_monotonic_clock_and_a_subscribe_rate():
    samples = wave.meter_samples(LOG, wall_to_monotonic=-1765000000.0)
    assert [round(t, 3) for t, _ in samples] == [0.25, 0.75, 1.25]
    assert samples[0][1] == {"subscribe": 10, "publish": 4} and samples[2][1] == {"subscribe": 610}
    rate = wave.command_rate(samples, "subscribe", since=0.3, until=1.0)
    assert rate == {"calls": 600, "peak_per_s": 1000.0}
    assert wave.command_rate(samples[:1], "subscribe", since=0.3, until=1.0) == {"calls": None, "peak_per_s": None}


def test_cores_per_group_count_a_restarted_containers_counter_from_zero():
    samples = [(0.0, {"app-1": 10.0, "load-1": 1.0}), (1.0, {"app-1": 0.2, "load-1": 1.5}),
               (2.0, {"app-1": 1.2, "load-1": 1.7})]
    c = wave.cores(samples, 2)
    assert c["app-1"] == {"mean": 0.6, "peak": 1.0} and c["load-1"] == {"mean": 0.35, "peak": 0.5}
    assert wave.cores(samples[:1], 2) == {}
    assert busiest({**c, "host busy": {"peak": 2.0}})[0] == ("app-1", 1.0)


def test_a_group_that_lost_a_process_counts_nothing_for_that_interval_not_its_whole_past():
    samples = [(0.0, {"dockerd": 900.0}), (1.0, {"dockerd": 500.3}), (2.0, {"dockerd": 500.8})]
    assert wave.cores(samples, 2)["dockerd"] == {"mean": 0.25, "peak": 0.5}


def test_settings_parse_from_presets_and_triples():
    [a, b] = parse_settings("socketio,0.5:10:0.25")
    assert a.backoff == (1.0, 5.0, 0.5) and b.backoff == (0.5, 10.0, 0.25)
    assert a.describe() == "socketio (1 s → 5 s, ±50%)"
    assert Setting("x", 1, 1, 0).describe() == "x (1 s → 1 s, no jitter)"


@pytest.mark.parametrize("text, message", [
    ("socket.io", "give a preset"), ("1:5", "give a preset"), ("1:5:nan", "give a preset"),
    ("2:1:0", "first delay <= maximum"), ("1:5:2", "randomization <= 1"), ("socketio,1:5:0.5", "one backoff twice"),
])
def test_bad_settings_are_refused_in_one_line(text, message):
    with pytest.raises(PlanError, match=message):
        parse_settings(text)


def test_a_replica_comes_back_after_the_wave_unless_told_but_a_balancer_must_come_back():
    assert parse_down(None, Trigger.KILL_REPLICA) is None and parse_down("wave", Trigger.KILL_REPLICA) is None
    assert parse_down(None, Trigger.RESTART_BALANCER) == 0.0 and parse_down("2.5", Trigger.KILL_REPLICA) == 2.5
    with pytest.raises(PlanError, match="nobody reconnects until the balancer is back"):
        parse_down("wave", Trigger.RESTART_BALANCER)
    with pytest.raises(PlanError, match="--down 'soon'"):
        parse_down("soon", Trigger.KILL_REPLICA)


def test_haproxy_is_one_process_so_it_is_refused_past_what_its_files_hold():
    from labs.bench.connections.plan import plan_layout
    from labs.bench.storm.front import front_for
    from labs.infra.sizing import haproxy_most
    from labs.scenario import Balancer

    assert haproxy_most(20_000) == 9_836
    small = plan_layout(9_000, via=Via.BRIDGE, replicas=3)
    f = front_for(Balancer.HAPROXY, small, upstream_timeout_ms=1000, max_fails=None)
    assert f.name == "haproxy" and "maxconn 9064" in f.config and "timeout connect 1000ms" in f.config
    with pytest.raises(PlanError, match="HAProxy is one process.*give N <= 9836"):
        front_for(Balancer.HAPROXY, plan_layout(10_000, via=Via.BRIDGE, replicas=3), upstream_timeout_ms=1000,
                  max_fails=None)
    with pytest.raises(PlanError, match="--max-fails is nginx's"):
        front_for(Balancer.HAPROXY, small, upstream_timeout_ms=1000, max_fails=1)
    nginx = front_for(Balancer.NGINX, small, upstream_timeout_ms=5000, max_fails=1)
    assert "max_fails=1" in nginx.config and "proxy_connect_timeout 5000ms" in nginx.config


def test_the_trigger_and_the_target_are_checked():
    assert parse_trigger("restart-balancer") is Trigger.RESTART_BALANCER
    with pytest.raises(PlanError, match="give one of kill-replica, restart-balancer"):
        parse_trigger("kill-redis")
    with pytest.raises(PlanError, match="app-1..app-3"):
        parse_target("app-4", 3)


def test_a_client_names_its_room_and_each_failure_in_one_word():
    assert [room_of(i, 50) for i in (0, 1, 50, 99)] == ["ticker", "u1", "ticker", "u99"]
    assert outcome_of(TimeoutError()) == "timeout" and outcome_of(ConnectionResetError()) == "reset"
    assert outcome_of(ConnectionRefusedError()) == "refused" and outcome_of(OSError(113, "x")) == "ehostunreach"
    assert outcome_of(ValueError("x")) == "ValueError"


def run_result(back_100: float | None, never_back: int) -> dict:
    return {"connections": 4, "connected": 4, "dropped": 3, "never_back": never_back, "back_50_s": 1.0,
            "back_95_s": 2.0, "back_100_s": back_100, "attempts_peak_per_s": 3, "accepted_peak_per_s": 2,
            "replica_peak_per_s": {"app-1": 0, "app-2": 1, "app-3": 1}, "refused": {"http 502": 2, "econnaborted": 1},
            "ticker": {"owed": 6, "lost": 0, "missed_away": 1, "unacked": 2}, "subscribe": {"peak_per_s": 12.0, "calls": 3},
            "cores": {"app-2": {"peak": 0.9, "mean": 0.5}, "load-1": {"peak": 0.4, "mean": 0.2},
                      "host busy": {"peak": 1.8, "mean": 1.0}}}


def test_a_row_takes_medians_and_a_run_that_left_a_client_out_has_no_100_percent():
    r = row(Setting("s", 1, 5, 0.5), [run_result(3.0, 0), run_result(None, 1), run_result(4.0, 0)])
    assert r["back_100_s"] is None and r["never_back"] == 1 and r["back_95_s"] == 2.0
    assert r["http_502"] == 2 and r["other_refused"] == 1 and r["refused_kinds"] == ["econnaborted", "http 502"]
    assert r["busiest"] == "app-2 0.90, load-1 0.40" and r["host_busy_peak"] == 1.8
    assert r["host_busy_mean"] == 1.0 and r["unmeasured_mean"] == 0.3
    result = {"connections": 4, "replicas": 3, "balancer": "nginx", "trigger": "kill-replica", "target": "app-1",
              "down_s": 0.0, "upstream_timeout_ms": 5000, "max_fails": 0, "runs": 3, "ticker": {"every": 50, "rate": 5.0},
              "layout": {"load_processes": 2, "nginx_workers": 2, "via": "bridge"}, "rows": [r],
              "machine": {"cpus": 2, "platform": "Linux", "memory_gib": 23.4, "docker": "20.10", "python": "3.11"}}
    text = markdown(result)
    assert "| s (1 s → 5 s, ±50%) | 3 | 3 | 1.00 | 2.00 | — | 1 | — |" in text
    assert "| 0 / 6 (1; 2) |" in text
    assert "started again 0 s after the SIGKILL; nginx tries a replica for 5000 ms" in text
    assert "leaves one out after no number of failures (max_fails=0)" in text
