from labs.checker import Validity, account, judge
from labs.history import History, Received, Sent, Session
from labs.scenario import Bound, Metric


def three_clients() -> list[Session]:
    return [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0), Session("c", "app-2", 0.0)]


def test_a_message_is_expected_at_every_other_connected_client():
    h = History(three_clients(), [Sent("a-1", "a", 1.0)],
                [Received("a-1", "b", 1.002, "app-1"), Received("a-1", "c", 1.004, "app-1")])
    acc = account(h)
    assert (acc.sent, acc.expected, acc.delivered, acc.lost) == (1, 2, 2, 0)
    assert (acc.same_expected, acc.same_delivered, acc.cross_expected, acc.cross_delivered) == (1, 1, 1, 1)
    assert [round(x, 6) for x in acc.latencies_ms] == [2.0, 4.0]
    assert acc.placement == {"app-1": 2, "app-2": 1}


def test_cross_server_loss_is_split_from_same_server_delivery():
    h = History(three_clients(), [Sent("a-1", "a", 1.0)], [Received("a-1", "b", 1.1, "app-1")])
    acc = account(h)
    assert acc.lost == 1 and acc.cross_delivered == 0 and acc.same_delivered == 1
    assert acc.metric(Metric.CROSS_SERVER_RATIO) == 0.0
    assert acc.metric(Metric.SAME_SERVER_RATIO) == 1.0


def test_second_copy_counts_as_duplicate_not_delivery():
    h = History(three_clients(), [Sent("a-1", "a", 1.0)],
                [Received("a-1", "b", 1.1, "app-1"), Received("a-1", "b", 1.2, "app-1")])
    acc = account(h)
    assert (acc.delivered, acc.duplicated, acc.lost) == (1, 1, 1)
    assert round(acc.latencies_ms[0], 6) == 100.0


def test_frames_to_the_sender_or_of_unknown_ids_are_unexpected():
    h = History(three_clients(), [Sent("a-1", "a", 1.0)],
                [Received("a-1", "a", 1.1, "app-1"), Received("zz-9", "b", 1.1, "app-1")])
    assert account(h).unexpected == 2


def test_a_client_not_connected_at_send_time_is_not_expected():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=0.5), Session("c", "app-2", 2.0)]
    h = History(sessions, [Sent("a-1", "a", 1.0)], [Received("a-1", "c", 2.5, "app-1")])
    acc = account(h)
    assert acc.expected == 0 and acc.unexpected == 1


def test_a_reconnected_client_is_judged_by_the_replica_it_was_on_at_send_time():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0, closed=1.0), Session("b", "app-2", 1.5)]
    h = History(sessions, [Sent("a-1", "a", 0.5), Sent("a-2", "a", 2.0)], [])
    acc = account(h)
    assert (acc.same_expected, acc.cross_expected) == (1, 1)


def test_verdict_passes_only_when_every_declared_bound_holds():
    h = History(three_clients(), [Sent("a-1", "a", 1.0)], [Received("a-1", "b", 1.1, "app-1")])
    acc = account(h)
    ok = judge(acc, {Metric.CROSS_SERVER_RATIO: Bound(0, 0), Metric.SAME_SERVER_RATIO: Bound(1, 1)})
    assert ok.validity is Validity.PASS
    bad = judge(acc, {Metric.LOST: Bound(0, 0)})
    assert bad.validity is Validity.FAIL and "lost = 1" in bad.reason


def test_a_ratio_over_nothing_expected_makes_the_verdict_unknown_not_pass():
    h = History([Session("a", "app-1", 0.0), Session("b", "app-1", 0.0)], [Sent("a-1", "a", 1.0)],
                [Received("a-1", "b", 1.1, "app-1")])
    verdict = judge(account(h), {Metric.CROSS_SERVER_RATIO: Bound(0, 0)})
    assert verdict.validity is Validity.UNKNOWN


def test_percentiles_come_from_the_recorded_latencies():
    sessions = [Session("a", "app-1", 0.0)] + [Session(f"r{i}", "app-1", 0.0) for i in range(100)]
    received = [Received("a-1", f"r{i}", 1.0 + (i + 1) / 1000, "app-1") for i in range(100)]
    acc = account(History(sessions, [Sent("a-1", "a", 1.0)], received))
    assert round(acc.percentile_ms(0.5), 3) == 50.5
    assert round(acc.percentile_ms(0.99), 3) == 99.01


from labs.history import FaultEvent, Resume  # noqa: E402


def test_a_message_missed_while_disconnected_is_lost_in_the_fault_window():
    # b drops at 1.0 (fault at 1.0, healed 1.2), is back on app-2 at 1.3; a's message at 1.1 never reaches b.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0, closed=1.0), Session("b", "app-2", 1.3)]
    sent = [Sent("a-1", "a", 1.1), Sent("a-2", "a", 5.0)]
    h = History(sessions, sent, [Received("a-2", "b", 5.01, "app-1")], faults=[FaultEvent("kill-replica", "app-1", 1.0, 1.2)])
    acc = account(h)
    assert acc.expected == 2, "b is still a member while it reconnects"
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (1, 1, 0)
    assert acc.reconnects == 1 and round(acc.max_gap_s, 6) == 0.3
    assert acc.windows == ((0.5, 1.8),), "the window lasts until b is back, with a margin either side"


def test_loss_outside_every_fault_window_is_reported_as_such():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    h = History(sessions, [Sent("a-1", "a", 9.0)], [], faults=[FaultEvent("pause-redis", "redis", 1.0, 2.0)])
    acc = account(h)
    assert (acc.lost_in_fault, acc.lost_outside_fault) == (0, 1)


def test_a_replayed_message_counts_as_recovered():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=1.0), Session("b", "app-1", 1.5)]
    h = History(sessions, [Sent("a-1", "a", 1.2)], [Received("a-1", "b", 1.6, "app-1")])
    acc = account(h)
    assert (acc.delivered, acc.recovered, acc.lost) == (1, 1, 0)


def test_loss_explained_by_a_later_trim_notice_is_counted_as_trimmed():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0), Session("c", "app-3", 0.0)]
    h = History(sessions, [Sent("a-1", "a", 1.0)], [Received("a-1", "c", 1.1, "app-1")],
                resumes=[Resume("b", 2.0, replayed=0, trimmed=True)])
    acc = account(h)
    assert (acc.lost, acc.trimmed) == (1, 1)
    assert acc.metric(Metric.UNTRIMMED_LOST) == 0


def test_a_replica_with_members_but_no_subscription_is_deaf():
    h = History([Session("a", "app-1", 0.0)], probes={"subscribers": 2, "replicas_with_members": 3})
    assert account(h).deaf_replicas == 1


def test_the_fault_window_lasts_until_every_replica_reports_its_broker_working_again():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    h = History(sessions, [Sent("a-1", "a", 3.0)], [], faults=[FaultEvent("restart-redis", "redis", 1.0, 2.0)],
                broker_events=[("app-2", 1.1, "subscriber", False), ("app-2", 3.2, "subscriber", True)])
    acc = account(h)
    assert acc.windows == ((0.5, 3.7),)
    assert (acc.lost_in_fault, acc.lost_outside_fault) == (1, 0)
