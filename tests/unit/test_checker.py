"""The room accounting and the verdict on hand-written histories. Every expected figure is derived in the
test's comment from the history itself; each hole the checker once had is a broken history that must now
fail the verdict its scenario declares."""

import math

import pytest

from labs import scenario
from labs.accounting.checker import account, percentile
from labs.accounting.history import (
    Ack,
    BrokerEvent,
    ClientRecord,
    FaultEvent,
    History,
    Received,
    Resume,
    Sent,
    Session,
)
from labs.accounting.verdict import Validity, judge, measures
from labs.protocols import for_app
from labs.scenario import Bound, Metric


def clients(*names: str, due: int = 0) -> list[ClientRecord]:
    return [ClientRecord(n, True, due) for n in names]


def three() -> list[Session]:
    return [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0), Session("c", "app-2", 0.0)]


def verdict_of(h: History, name: str) -> Validity:
    """The verdict the named scenario's declaration gives this history (with its protocol's own metrics)."""
    s = scenario.load(name)
    protocol = for_app(s.topology.app)
    typed = protocol.new_history()
    typed.__dict__.update(h.__dict__)
    acc = account(typed)
    return judge({**measures(acc), **protocol.measures(typed, acc)}, s.expect).validity


# -- the room core ------------------------------------------------------------------------------------

def test_a_message_is_expected_at_every_other_member():
    h = History(sessions=three(), sent=[Sent("a-1", "a", 1.0)],
                received=[Received("a-1", "b", 1.002, "app-1"), Received("a-1", "c", 1.004, "app-1")])
    acc = account(h)
    assert (acc.sent, acc.expected, acc.delivered, acc.lost) == (1, 2, 2, 0)
    # b shares a's replica, c does not
    assert (acc.same_expected, acc.same_delivered, acc.cross_expected, acc.cross_delivered) == (1, 1, 1, 1)
    assert [round(x, 6) for x in acc.latencies_ms] == [2.0, 4.0]


def test_placement_lists_every_replica_and_counts_each_clients_first_session():
    h = History(replicas=["app-1", "app-2", "app-3"], sessions=three())
    acc = account(h)
    assert acc.placement == {"app-1": 2, "app-2": 1, "app-3": 0}
    assert acc.replicas_used == 2 and acc.placement_max_min == math.inf


def test_cross_server_loss_is_split_from_same_server_delivery():
    h = History(sessions=three(), sent=[Sent("a-1", "a", 1.0)], received=[Received("a-1", "b", 1.1, "app-1")])
    values = measures(account(h))
    assert values[Metric.CROSS_SERVER_RATIO] == 0.0 and values[Metric.SAME_SERVER_RATIO] == 1.0
    assert values[Metric.LOST] == 1


def test_a_second_copy_is_a_duplicate_not_a_delivery():
    h = History(sessions=three(), sent=[Sent("a-1", "a", 1.0)],
                received=[Received("a-1", "b", 1.1), Received("a-1", "b", 1.2)])
    acc = account(h)
    assert (acc.delivered, acc.duplicated, acc.lost) == (1, 1, 1)  # c never got it
    assert round(acc.latencies_ms[0], 6) == 100.0


def test_copies_to_the_sender_or_of_unknown_ids_are_unexpected_and_to_late_joiners_not_member():
    sessions = three() + [Session("d", "app-2", 1.5)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 1.0)],
                received=[Received("a-1", "a", 1.1), Received("zz-9", "b", 1.1), Received("a-1", "d", 1.6)])
    acc = account(h)
    assert acc.unexpected == 2 and acc.not_member == 1
    assert acc.expected == 2  # b and c; d joined after the send


def test_a_reconnected_client_is_judged_by_the_replica_it_was_on_at_send_time():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0, closed=1.0), Session("b", "app-2", 1.5)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 0.5), Sent("a-2", "a", 2.0)])
    acc = account(h)
    assert (acc.same_expected, acc.cross_expected) == (1, 1)


def test_a_replayed_message_counts_as_recovered():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=1.0), Session("b", "app-1", 1.5)]
    acc = account(History(sessions=sessions, sent=[Sent("a-1", "a", 1.2)], received=[Received("a-1", "b", 1.6)]))
    assert (acc.delivered, acc.recovered, acc.lost) == (1, 1, 0)


def test_verdict_passes_only_when_every_declared_bound_holds():
    h = History(sessions=three(), sent=[Sent("a-1", "a", 1.0)], received=[Received("a-1", "b", 1.1)])
    values = measures(account(h))
    assert judge(values, {Metric.CROSS_SERVER_RATIO: Bound(0, 0)}).validity is Validity.PASS
    bad = judge(values, {Metric.LOST: Bound(0, 0)})
    assert bad.validity is Validity.FAIL and "lost = 1" in bad.reason


def test_a_ratio_over_nothing_expected_makes_the_verdict_unknown_not_pass():
    h = History(sessions=[Session("a", "app-1", 0.0), Session("b", "app-1", 0.0)], sent=[Sent("a-1", "a", 1.0)],
                received=[Received("a-1", "b", 1.1)])
    assert judge(measures(account(h)), {Metric.CROSS_SERVER_RATIO: Bound(0, 0)}).validity is Validity.UNKNOWN


def test_a_metric_the_run_did_not_measure_makes_the_verdict_unknown():
    assert judge({}, {Metric.SESSION_UNKNOWN: Bound(0, 0)}).validity is Validity.UNKNOWN


# -- percentiles --------------------------------------------------------------------------------------

def test_percentiles_interpolate_between_ranks_and_reach_the_extremes():
    values = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 100.0
    assert percentile(values, 0.5) == 50.5  # halfway between the 50th and 51st value
    assert math.isclose(percentile(values, 0.99), 99.01)  # 99 + 0.01 of the way to 100
    assert percentile([7.0], 0.0) == percentile([7.0], 1.0) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 1.5)


# -- holes that once let a lossy run pass ---------------------------------------------------------------

def test_unacknowledged_messages_are_still_expected_so_a_silent_socketio_run_fails():
    # 3 clients each send 1 message; the server acknowledged none and delivered none. Each message is
    # expected at the 2 others: 6 deliveries expected, 0 delivered, 3 unacked.
    sessions = [Session(c, f"app-{i}", 0.0) for i, c in enumerate("abc", 1)]
    h = History(clients=clients("a", "b", "c", due=1), sessions=sessions,
                sent=[Sent(f"{c}-1", c, 1.0) for c in "abc"])
    acc = account(h)
    assert (acc.expected, acc.delivered, acc.lost, acc.unacked) == (6, 0, 6, 3)
    assert verdict_of(h, "socketio-redis-manager") is Validity.FAIL


def test_a_client_that_drops_for_good_stays_a_member_and_what_it_never_sent_is_counted():
    # a, b, c due 3 messages each at t = 1, 2, 3. c drops at 1.5 and never comes back: it sent c-1 only.
    # Messages after its drop (a-2, a-3, b-2, b-3) are still expected at c and lost; its 2 unsent messages
    # are expected at a and b and lost: 4 + 4 = 8 lost.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0), Session("c", "app-3", 0.0, closed=1.5)]
    sent = [Sent(f"{c}-{n}", c, float(n)) for c in "ab" for n in (1, 2, 3)] + [Sent("c-1", "c", 1.0)]
    received = [Received(m.id, r, m.at + 0.01) for m in sent for r in "abc"
                if r != m.sender and not (r == "c" and m.at > 1.5)]
    h = History(clients=clients("a", "b", "c", due=3), sessions=sessions, sent=sent, received=received,
                acks=[Ack(m.id, m.at) for m in sent])
    acc = account(h)
    assert acc.unsent == 2
    assert acc.expected == 7 * 2 + 2 * 2 and acc.lost == 8
    assert acc.failover.dropped == 1 and acc.failover.reconnected == 0 and acc.failover.reconnect_max_s == math.inf
    assert verdict_of(h, "socketio-redis-manager") is Validity.FAIL
    assert verdict_of(h, "pubsub") is Validity.FAIL


def test_a_loss_before_any_fault_is_not_excused_by_a_later_trim_notice():
    # b misses a-1 (entry seq 1, at t = 0.1, before the fault). The notice b gets later says entries 40..45
    # were trimmed: seq 1 is outside that range, so the loss is untrimmed.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 0.1), Sent("a-2", "a", 3.0)],
                acks=[Ack("a-1", 0.11, seq=1), Ack("a-2", 3.01, seq=46)],
                received=[Received("a-2", "b", 3.02, seq=46)],
                resumes=[Resume("b", 2.5, 0, 40, 45)],
                faults=[FaultEvent("partition-replica", "app-2", 2.0, 2.4)])
    acc = account(h)
    assert (acc.lost, acc.trimmed, acc.lost_outside_fault) == (1, 0, 1)
    assert verdict_of(h, "fault-streams-trimmed") is Validity.FAIL


def trimmed_history(log_first: int | None) -> History:
    """b misses a-1 (entry 42); the server tells b entries 40..45 were trimmed; the log, asked at the end,
    starts at entry `log_first` (None: it could not be asked)."""
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    return History(sessions=sessions, sent=[Sent("a-1", "a", 2.1)], acks=[Ack("a-1", 2.11, seq=42)],
                   resumes=[Resume("b", 2.5, 0, 40, 45)], faults=[FaultEvent("partition-replica", "app-2", 2.0, 2.4)],
                   probes={} if log_first is None else {"stream_first_seq": {"": log_first}})


def test_a_loss_inside_the_reported_trim_range_is_trimmed_when_the_log_no_longer_holds_it():
    acc = account(trimmed_history(46))
    assert (acc.lost, acc.trimmed, acc.trim_refuted) == (1, 1, 0) and measures(acc)[Metric.UNTRIMMED_LOST] == 0


def test_a_trim_the_log_contradicts_is_not_trimmed():
    # the log still starts at entry 40: entry 42 was there to read, the server's notice does not excuse it
    acc = account(trimmed_history(40))
    assert (acc.lost, acc.trimmed, acc.trim_refuted) == (1, 0, 1) and measures(acc)[Metric.UNTRIMMED_LOST] == 1


def test_a_trim_nobody_could_check_is_unknown_not_zero():
    acc = account(trimmed_history(None))
    assert acc.trimmed is None and measures(acc)[Metric.UNTRIMMED_LOST] is None
    expect = scenario.load("fault-streams-trimmed").expect
    assert judge(measures(acc), expect).validity is not Validity.PASS


def test_the_window_lasts_until_each_replica_that_broke_during_the_fault_works_again():
    # Redis restarts 1.0 -> 2.0; app-2's subscriber breaks at 1.1 and works again at 3.2: window 0.5..3.7.
    h = History(faults=[FaultEvent("restart-redis", "redis", 1.0, 2.0)],
                broker_events=[BrokerEvent("app-2", 1.1, "subscriber", False),
                               BrokerEvent("app-2", 3.2, "subscriber", True)])
    assert account(h).windows == ((0.5, 3.7),)


def test_a_working_report_with_no_break_in_the_fault_does_not_stretch_its_window():
    # app-3 says "working" 20 s after the heal, but it never broke during the fault: window 0.5..2.5.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 10.0)], faults=[FaultEvent("pause-redis", "redis", 1.0, 2.0)],
                broker_events=[BrokerEvent("app-3", 0.2, "subscriber", False),
                               BrokerEvent("app-3", 22.0, "subscriber", True)])
    acc = account(h)
    assert acc.windows == ((0.5, 2.5),)
    assert (acc.lost_in_fault, acc.lost_outside_fault) == (0, 1)


def test_the_window_lasts_until_every_client_the_fault_disconnected_is_back():
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-1", 0.0, closed=1.0), Session("b", "app-2", 1.3)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 1.1), Sent("a-2", "a", 5.0)],
                received=[Received("a-2", "b", 5.01)], faults=[FaultEvent("kill-replica", "app-1", 1.0, 1.2)])
    acc = account(h)
    assert acc.windows == ((0.5, 1.8),)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (1, 1, 0)
    assert acc.reconnects == 1 and round(acc.max_gap_s, 6) == 0.3


def test_a_deaf_replica_is_found_by_name_even_when_the_subscriber_count_adds_up():
    # Three replicas have members in one room; Redis shows three subscribers, but one is a stranger's
    # (app-4) and app-2 holds none. A count comparison (3 >= 3) would say nobody is deaf.
    h = History(probes={"members": {"app-1": 1, "app-2": 1, "app-3": 1},
                        "subscriptions": {"app-1": 2, "app-3": 2, "app-4": 2}})
    acc = account(h)
    assert acc.deaf_replicas == ("app-2",)
    assert judge(measures(acc), {Metric.DEAF_REPLICAS: Bound(0, 0)}).validity is Validity.FAIL


def test_a_subscriber_missing_its_room_channel_is_deaf():
    # app-1 has members in 2 rooms: it needs its control channel and 2 room channels, Redis shows 2.
    acc = account(History(probes={"members": {"app-1": 2}, "subscriptions": {"app-1": 2}}))
    assert acc.deaf_replicas == ("app-1",)


# -- failover -----------------------------------------------------------------------------------------

def failover_history(back_after: float | None = 0.8) -> History:
    """a and b on app-2 (killed at 2.0, healed 3.0), c on app-1; a and b drop at 2.05."""
    sessions = [Session("a", "app-2", 0, 2.05), Session("b", "app-2", 0, 2.05), Session("c", "app-1", 0)]
    if back_after is not None:
        sessions += [Session("a", "app-1", 2.05 + back_after), Session("b", "app-3", 2.05 + 0.3)]
    sent = [Sent("c-1", "c", 1.0), Sent("c-2", "c", 2.02), Sent("c-3", "c", 2.2), Sent("c-4", "c", 3.5)]
    received = [Received("c-1", "a", 1.1), Received("c-1", "b", 1.1), Received("c-4", "a", 3.6),
                Received("c-4", "b", 3.6)]
    return History(sessions=sessions, sent=sent, received=received, acks=[Ack(m.id, m.at) for m in sent],
                   faults=[FaultEvent("kill-replica", "app-2", 2.0, 3.0)])


def test_failover_counts_who_dropped_how_long_they_took_and_what_they_missed():
    acc = account(failover_history())
    f = acc.failover
    assert f.killed == ("app-2",) and f.on_killed == 2 and f.dropped == 2 and f.dropped_elsewhere == 0
    assert f.reconnected == 2 and math.isclose(f.reconnect_max_s, 0.8)
    # c-2 was sent while a and b were still connected (lost in flight); c-3 went out while they were away
    assert acc.lost_dropped == 4 and f.missed_while_away == 2 and acc.lost_undisturbed == 0
    values = measures(acc)
    assert values[Metric.DROPPED_ON_KILLED_RATIO] == 1.0 and values[Metric.RECONNECTED_RATIO] == 1.0


def test_a_client_that_never_comes_back_fails_the_failover_scenario():
    acc = account(failover_history(back_after=None))
    assert measures(acc)[Metric.RECONNECT_MAX_S] == math.inf
    assert judge(measures(acc), scenario.load("sticky-cookie-failover").expect).validity is Validity.FAIL


def test_failover_metrics_are_undefined_without_a_kill():
    values = measures(account(History(sessions=three())))
    assert values[Metric.DROPPED_ELSEWHERE] is None and values[Metric.RECONNECT_MAX_S] is None


def test_a_message_in_flight_to_a_connection_the_fault_cut_is_lost_in_the_fault():
    # b sits on app-2, which is killed at 1.0 (window 0.5..); a-1 was sent at 0.3, before the window, and was
    # still on its way (app-2 lagged): nothing a sent after it reached b before the cut.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=1.0), Session("b", "app-3", 1.3)]
    h = History(sessions=sessions, sent=[Sent("a-0", "a", 0.1), Sent("a-1", "a", 0.3)],
                received=[Received("a-0", "b", 0.2)], faults=[FaultEvent("kill-replica", "app-2", 1.0, 1.2)])
    acc = account(h)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (1, 1, 0)


def test_a_message_skipped_before_a_cut_is_lost_outside_the_fault():
    # The same, but a-2 (sent after a-1) reached b before the cut: one channel keeps a sender's order, so
    # a-1 was not in flight but skipped, and the fault does not excuse it.
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=1.0), Session("b", "app-3", 1.3)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 0.3), Sent("a-2", "a", 0.35)],
                received=[Received("a-2", "b", 0.4)], faults=[FaultEvent("kill-replica", "app-2", 1.0, 1.2)])
    acc = account(h)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (1, 0, 1)
    assert verdict_of(h, "fault-pubsub-kill-replica") is Validity.FAIL


# -- broken histories the property tests (test_checker_properties.py) found or were built to catch -------

def test_a_working_report_before_the_break_leaves_the_break_unrecovered():
    """A broker connection that reports working, then broken, never recovered: a late recovery."""
    h = History(faults=[FaultEvent("kill-pubsub-clients", "redis", 2.0, 2.0)],
                broker_events=[BrokerEvent("app-3", 2.1, "subscriber", True),
                               BrokerEvent("app-3", 2.2, "subscriber", False)])
    acc = account(h)
    assert (acc.late_recoveries, acc.recovery_max_s) == (1, math.inf)
    assert verdict_of(h, "fault-pubsub-kill-pubsub-clients") is Validity.FAIL


def test_a_trim_notice_the_log_only_partly_confirms_is_judged_entry_by_entry():
    """b is told entries 40..45 were trimmed and misses 41 and 44; the log starts at 43: 41 is trimmed, 44 refuted."""
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0)]
    h = History(sessions=sessions, sent=[Sent("a-1", "a", 2.1), Sent("a-2", "a", 2.2)],
                acks=[Ack("a-1", 2.11, seq=41), Ack("a-2", 2.21, seq=44)], resumes=[Resume("b", 2.5, 0, 40, 45)],
                faults=[FaultEvent("partition-replica", "app-2", 2.0, 2.4)], probes={"stream_first_seq": {"": 43}})
    acc = account(h)
    assert (acc.lost, acc.trimmed, acc.trim_refuted) == (2, 1, 1) and measures(acc)[Metric.UNTRIMMED_LOST] == 1


def killed_app2(*, c_gets_a1: bool, b_back: float | None) -> History:
    """a on app-1, c on app-3, b on app-2, which is killed 2.0 -> 4.0: b drops at 2.05 (back on app-3 at
    `b_back`, or never). a-0 (2.2) reaches c, not b; a-1 (14.0, ten seconds after the heal) reaches b if it
    is back, and c if `c_gets_a1`."""
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-2", 0.0, closed=2.05), Session("c", "app-3", 0.0)]
    sessions += [Session("b", "app-3", b_back)] if b_back is not None else []
    received = [Received("a-0", "c", 2.21)] + [Received("a-1", "b", 14.01)] * (b_back is not None)
    received += [Received("a-1", "c", 14.01)] * c_gets_a1
    return History(sessions=sessions, sent=[Sent("a-0", "a", 2.2), Sent("a-1", "a", 14.0)], received=received,
                   acks=[Ack("a-0", 2.21), Ack("a-1", 14.01)],
                   faults=[FaultEvent("kill-replica", "app-2", 2.0, 4.0, ("app-2",))])


def test_a_client_that_never_returns_does_not_excuse_a_later_loss_between_two_other_replicas():
    """b never returns: its window stops at the allowance, and a-1 lost from app-1 to app-3 at 14.0 is outside."""
    assert verdict_of(killed_app2(c_gets_a1=True, b_back=2.5), "fault-pubsub-kill-replica") is Validity.PASS
    acc = account(killed_app2(c_gets_a1=False, b_back=None))
    assert (acc.lost_in_fault, acc.lost_outside_fault, acc.late_recoveries) == (1, 2, 1)
    assert account(killed_app2(c_gets_a1=True, b_back=None)).lost_outside_fault == 1
    assert verdict_of(killed_app2(c_gets_a1=False, b_back=None), "fault-pubsub-kill-replica") is Validity.FAIL


def test_a_loss_between_two_replicas_the_kill_did_not_reach_is_outside_the_fault_even_while_it_is_on():
    """a-0 is lost from app-1 to app-3 at 2.2, while app-2 is killed: its path crosses nothing the fault reached."""
    h = killed_app2(c_gets_a1=True, b_back=2.5)
    h.received = [r for r in h.received if (r.id, r.client) != ("a-0", "c")]
    acc = account(h)
    assert (acc.lost_in_fault, acc.lost_outside_fault) == (1, 1)
    assert verdict_of(h, "fault-pubsub-kill-replica") is Validity.FAIL


def rooms_history(*, extra: list[Received] = (), b_closes: float | None = None) -> History:
    """Three rooms, two clients each, each room on its own replica; each client sends one message at 1.0,
    which its room-mate gets."""
    names = [(f"{c}{r}", f"room-{r}", f"app-{r + 1}") for r in range(3) for c in "ab"]
    sessions = [Session(n, app, 0.0, b_closes if n == "b0" else None) for n, _, app in names]
    pairs = [(n, m) for n, room, _ in names for m, other, _ in names if room == other and n != m]
    return History(replicas=["app-1", "app-2", "app-3"], sessions=sessions,
                   clients=[ClientRecord(n, True, 1, room=room) for n, room, _ in names],
                   sent=[Sent(f"{n}-1", n, 1.0) for n, _, _ in names], acks=[Ack(f"{n}-1", 1.01) for n, _, _ in names],
                   received=[Received(f"{n}-1", m, 1.02) for n, m in pairs] + list(extra))


def test_three_wrong_room_copies_are_three_misrouted_and_fail_partition_rooms():
    """a0's message reaches a1 twice and b2 once, clients of other rooms."""
    assert verdict_of(rooms_history(), "partition-rooms") is Validity.PASS
    h = rooms_history(extra=[Received("a0-1", "a1", 1.02), Received("a0-1", "a1", 1.5), Received("a0-1", "b2", 1.02)])
    acc = account(h)
    assert (acc.misrouted, acc.duplicated, acc.not_member) == (3, 0, 0)
    assert verdict_of(h, "partition-rooms") is Validity.FAIL


def test_reconnects_cannot_hide_a_drop_from_partition_rooms():
    """b0 drops after it got everything and never returns: nothing lost, no reconnect, but drops = 1."""
    h = rooms_history(b_closes=2.0)
    acc = account(h)
    assert (acc.lost, acc.reconnects, acc.drops, acc.never_back) == (0, 0, 1, 1)
    assert verdict_of(h, "partition-rooms") is Validity.FAIL


def partitioned_app2(*, c_gets_a1: bool) -> History:
    """app-2 (d) is cut from the broker 2.0 -> 4.0; app-3 (b, c) reports its subscriber broken 2.5 -> 3.5
    while a-1 (2.6) and a-2 (3.0) from a on app-1 still reach b, and a-2 reaches c. d gets neither."""
    sessions = [Session("a", "app-1", 0.0), Session("b", "app-3", 0.0), Session("c", "app-3", 0.0),
                Session("d", "app-2", 0.0)]
    received = [Received("a-1", "b", 2.61), Received("a-2", "b", 3.01), Received("a-2", "c", 3.01)]
    received += [Received("a-1", "c", 2.61)] * c_gets_a1
    return History(sessions=sessions, sent=[Sent("a-1", "a", 2.6), Sent("a-2", "a", 3.0)], received=received,
                   acks=[Ack("a-1", 2.61), Ack("a-2", 3.01)],
                   faults=[FaultEvent("partition-replica", "app-2", 2.0, 4.0, ("app-2",))],
                   broker_events=[BrokerEvent("app-3", 2.5, "subscriber", False),
                                  BrokerEvent("app-3", 3.5, "subscriber", True)])


def test_a_broker_break_a_replica_reports_while_deliveries_through_it_go_on_does_not_excuse_a_loss():
    """app-3's report is not believed (a-1 and a-2 still reached b through it): c's loss of a-1 is outside."""
    assert verdict_of(partitioned_app2(c_gets_a1=True), "fault-pubsub-partition") is Validity.PASS
    acc = account(partitioned_app2(c_gets_a1=False))
    assert (acc.lost_in_fault, acc.lost_outside_fault, acc.late_recoveries) == (2, 1, 0)
    assert verdict_of(partitioned_app2(c_gets_a1=False), "fault-pubsub-partition") is Validity.FAIL


def test_a_break_on_an_unreached_replica_counts_when_only_the_frozen_targets_backlog_came_through_it():
    """Nothing reached a through app-1 during its break but d-1 from frozen app-2, after the heal: a's losses are in."""
    # app-2 frozen 2.0 -> 4.0; app-1's subscriber broken 2.5 -> 3.5: a misses c-1 and c-2, sent then; d-1, sent on
    # app-2 at 2.7, goes out when app-2 wakes and reaches a at 4.11, after app-1 works again
    h = History(sessions=[Session("a", "app-1", 0.0), Session("c", "app-3", 0.0), Session("d", "app-2", 0.0)],
                sent=[Sent("c-1", "c", 2.6), Sent("d-1", "d", 2.7), Sent("c-2", "c", 3.0)],
                acks=[Ack("c-1", 2.61), Ack("d-1", 4.1), Ack("c-2", 3.01)],
                received=[Received("d-1", "a", 4.11), Received("d-1", "c", 4.11)],
                faults=[FaultEvent("slow-consumer", "app-2", 2.0, 4.0, ("app-2",))],
                broker_events=[BrokerEvent("app-1", 2.5, "subscriber", False),
                               BrokerEvent("app-1", 3.5, "subscriber", True)],
                probes={"members": {"app-1": 1, "app-2": 1, "app-3": 1},
                        "subscriptions": {"app-1": 2, "app-2": 2, "app-3": 2}})
    acc = account(h)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (4, 4, 0)
    assert verdict_of(h, "fault-pubsub-slow-consumer") is Validity.PASS
