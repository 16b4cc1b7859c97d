"""The connection bench's ramp and its room in the conntrack table, with literal inputs (no sockets, no
Docker; the table is a folder of two files standing in for /proc/sys/net/netfilter)."""

import pytest

from labs.bench.connections.ramp import (
    AUTO_START,
    AUTO_STEP,
    Ramp,
    RampError,
    achieved,
    clean_rate,
    combine,
    gives_up,
    next_start,
    parse_ramp,
    stop_reason,
)
from labs.bench.connections.report import bound, costs, ramp_csv
from labs.bench.connections.tracking import conntrack_room, raised_max


def test_rate_words_are_a_number_auto_or_off():
    assert parse_ramp("300") == Ramp(rate=300.0)
    assert parse_ramp("1_500") == Ramp(rate=1500.0)
    assert parse_ramp("auto") == Ramp(rate=AUTO_START, step=AUTO_STEP) == Ramp(rate=100.0, step=25.0)
    assert parse_ramp("off") == Ramp(rate=None)


@pytest.mark.parametrize("word", ["fast", "0", "-5", "20001", "nan", ""])
def test_a_rate_that_is_not_one_is_one_clear_error(word):
    with pytest.raises(RampError, match=r"--rate .*: give connections per second \(1\.\.20000\), auto .* or off"):
        parse_ramp(word)


def test_each_load_process_gets_its_share_of_the_rate_and_the_step():
    assert Ramp(rate=280.0, step=35.0).per_process(7) == Ramp(rate=40.0, step=5.0)
    assert Ramp(rate=3.0).per_process(7).rate == 1.0  # never below one a second
    assert Ramp(rate=None).per_process(7) == Ramp(rate=None)


def test_a_stepped_ramp_goes_up_while_all_is_well_down_when_slow_and_halves_on_a_loss():
    ramp = Ramp(rate=20.0, step=5.0, slow_s=1.0)
    assert ramp.next_rate(20.0, tried=200, failed=0, closed=0, median_s=0.05) == 25.0
    assert ramp.next_rate(20.0, tried=200, failed=0, closed=0, median_s=1.5) == 15.0
    assert ramp.next_rate(20.0, tried=200, failed=3, closed=0, median_s=0.05) == 10.0
    assert ramp.next_rate(20.0, tried=200, failed=0, closed=1, median_s=0.05) == 10.0
    assert ramp.next_rate(1.5, tried=10, failed=0, closed=0, median_s=3.0) == 1.0
    # a window that tried nothing (the gate was full) says nothing: the rate stays
    assert ramp.next_rate(20.0, tried=0, failed=0, closed=0, median_s=None) == 20.0


def test_a_fixed_rate_never_moves():
    assert Ramp(rate=40.0).next_rate(40.0, tried=400, failed=9, closed=9, median_s=5.0) == 40.0


def test_the_next_connection_is_one_interval_later_and_a_stall_is_not_made_up_in_a_burst():
    assert next_start(10.0, 10.0, 4.0) == 10.25
    assert next_start(10.0, 12.0, 4.0) == 12.25  # fell behind by 2 s: the next waits an interval from now
    assert next_start(10.0, 12.0, None) == 12.0  # unpaced: at once


def test_the_windows_of_all_load_processes_add_up_and_the_clean_rate_is_the_fastest_without_a_loss():
    a = [{"t_s": 10.0, "rate": 14.3, "opened": 143, "failed": 0, "closed": 0, "median_s": 0.04},
         {"t_s": 20.0, "rate": 17.9, "opened": 179, "failed": 0, "closed": 0, "median_s": 0.3},
         {"t_s": 30.0, "rate": 21.4, "opened": 150, "failed": 2, "closed": 0, "median_s": 2.1}]
    b = [{"t_s": 10.1, "rate": 14.3, "opened": 143, "failed": 0, "closed": 0, "median_s": 0.05},
         {"t_s": 20.1, "rate": 17.9, "opened": 179, "failed": 0, "closed": 1, "median_s": 0.2}]
    rows = combine([a, b])
    assert rows == [{"t_s": 10.1, "rate": 28.6, "opened": 286, "failed": 0, "closed": 0, "median_s": 0.05},
                    {"t_s": 20.1, "rate": 35.8, "opened": 358, "failed": 0, "closed": 1, "median_s": 0.3},
                    {"t_s": 30.0, "rate": 21.4, "opened": 150, "failed": 2, "closed": 0, "median_s": 2.1}]
    assert clean_rate(rows) == 28.6
    assert achieved(rows) == pytest.approx((286 + 358 + 150) / 30.0)
    assert clean_rate([]) is None and achieved([]) is None


def test_a_raised_conntrack_table_holds_the_run_and_a_quarter_spare_rounded_up():
    assert raised_max(262_144, 50_000, 200_000) == 393_216  # 250,000 / 0.75 = 333,334 -> 6 x 65,536
    assert raised_max(262_144, 2, 20_000) == 262_144  # never smaller than it was


def _table(tmp_path, size, used):
    (tmp_path / "nf_conntrack_max").write_text(f"{size}\n")
    (tmp_path / "nf_conntrack_count").write_text(f"{used}\n")
    return tmp_path


def test_the_table_is_raised_for_a_run_without_room_and_put_back_after_it_said_so(tmp_path):
    table, said = _table(tmp_path, 262_144, 100_000), []
    with conntrack_room(200_000, progress=said.append, directory=table):
        assert (table / "nf_conntrack_max").read_text() == "458752\n"
        (table / "nf_conntrack_count").write_text("0\n")  # the run's entries drained
    assert (table / "nf_conntrack_max").read_text() == "262144\n"
    assert said[0].startswith("raising the host's net.netfilter.nf_conntrack_max from 262144 to 458752")
    assert said[-1] == "net.netfilter.nf_conntrack_max back at 262144 (0 entries in use)"


def test_a_table_with_room_is_left_alone(tmp_path):
    table, said = _table(tmp_path, 262_144, 2), []
    with conntrack_room(200_000, progress=said.append, directory=table):
        pass
    assert (table / "nf_conntrack_max").read_text() == "262144\n" and said == []


def test_the_ramp_gives_up_after_three_windows_in_a_row_that_lost_connections():
    ok = {"failed": 0, "closed": 0}
    failed, closed = {"failed": 231, "closed": 0}, {"failed": 0, "closed": 1045}
    assert gives_up([ok, failed, closed, failed])
    assert not gives_up([failed, closed, ok])  # the last window held: go on
    assert not gives_up([failed, closed])  # too few windows to say
    assert not gives_up([])


def test_the_bench_own_cpu_per_connection_and_per_held_connection_leaves_the_host_out():
    run = {"connections": 60_000, "ramp": {"untried": 40_000}, "connect_s": 100.0, "open_after_hold": 20_000,
           "hold_s": 30.0,
           "cpu_share": {"connect": {"host busy": 1.0, "everything else": 0.7, "load processes": 0.2, "nginx": 0.1},
                         "hold": {"host busy": 0.9, "everything else": 0.8, "app-1": 0.05, "nginx": 0.05}}}
    # 0.3 of 2 cores for 100 s over the 20,000 tried: 3,000 µs each; 0.1 of 2 cores over 20,000 held
    assert costs(run, 2) == {"us_per_connect": 3000.0, "cores_per_10k_held": 0.1}
    assert costs({**run, "hold_s": 0.0}, 2)["cores_per_10k_held"] is None


def test_a_paced_ramp_stops_when_it_keeps_losing_or_its_time_is_up_and_an_unpaced_one_never():
    lost = [{"failed": 1, "closed": 0}] * 3
    assert stop_reason(Ramp(rate=10.0), lost, 5.0) == "3 windows in a row lost connections"
    assert stop_reason(Ramp(rate=10.0, limit_s=420.0), [], 420.0) == "the ramp's 420 s were up"
    assert stop_reason(Ramp(rate=10.0, limit_s=420.0), [], 419.9) is None
    assert stop_reason(Ramp(rate=None), lost, 5.0) is None


def test_the_ramp_csv_has_a_row_per_window_and_an_empty_cell_for_no_handshake():
    runs = [{"ramp": {"windows": [{"t_s": 10.0, "rate": 100.0, "opened": 990, "failed": 0, "closed": 0,
                                   "median_s": 0.05},
                                  {"t_s": 20.0, "rate": 50.0, "opened": 0, "failed": 80, "closed": 3,
                                   "median_s": None}]}}]
    assert ramp_csv(runs) == ("run,t_s,rate,opened,failed,closed,median_s\n1,10.0,100.0,990,0,0,0.05\n"
                              "1,20.0,50.0,0,80,3,\n")


def test_the_bound_tells_connections_never_tried_from_connections_that_failed():
    run = {"connections": 100, "connected": 40, "failed": 60, "lost": 0, "connect_errors": {"TimeoutError": 5},
           "ramp": {"untried": 55, "stopped": ["the ramp's 360 s were up"]}, "broadcasts": [],
           "cpu_share": {"connect": {"host busy": 0.98}}}
    assert bound([run], [("host memory", 0.2)]).startswith(
        "5 connection(s) failed and 55 were never tried (the ramp stopped: the ramp's 360 s were up), 0 receipt(s) lost")


def test_a_loss_names_the_subscriber_rebuilds_the_replicas_report():
    run = {"connections": 10, "connected": 10, "failed": 0, "lost": 4, "connect_errors": {}, "broadcasts": [],
           "replica_counters": {"app-1": {"deaf_detected": 2, "subscriber_rebuilds": 1},
                                "app-2": {"deaf_detected": 1, "subscriber_rebuilds": 1}},
           "cpu_share": {"connect": {"host busy": 0.8}}}
    text = bound([run], [("host memory", 0.2)])
    assert "0 connection(s) failed, 4 receipt(s) lost" in text
    assert "replicas report deaf_detected 3, subscriber_rebuilds 2" in text
    assert "replicas report" not in bound([{**run, "replica_counters": {}}], [("host memory", 0.2)])
