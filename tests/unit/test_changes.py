"""What a topology change did to the clients, on hand-written histories: who came back on another replica
(remapped_ratio), how long what was sent during the change took (p99_in_change_ms), and how a rolling
restart's losses are attributed, one replica's step at a time. The broken history comes first."""

import math

from labs import scenario
from labs.accounting.changes import close_codes, latencies_in_change_ms, remapped
from labs.accounting.checker import account
from labs.accounting.history import ClientRecord, FaultEvent, History, Received, Sent, Session
from labs.accounting.verdict import Validity, judge, measures
from labs.scenario import Metric


def scale_out(*moves: tuple[str, str, str]) -> History:
    """Clients (name, replica before, replica after): each cut at 2.0 by a scale-out that ran 1.0..2.0, and
    back 0.1 s later."""
    h = History(replicas=["app-1", "app-2", "app-3", "app-4"],
                clients=[ClientRecord(c, True) for c, _, _ in moves],
                faults=[FaultEvent("scale-out", "app-4", 1.0, 2.0, ("app-4", "lb"))])
    for c, before, after in moves:
        h.sessions += [Session(c, before, 0.0, 2.0), Session(c, after, 2.1)]
    return h


def test_a_client_that_came_back_on_another_replica_is_remapped():
    h = scale_out(("a", "app-1", "app-4"), ("b", "app-2", "app-2"), ("c", "app-3", "app-3"), ("d", "app-1", "app-1"))
    r = remapped(h)
    assert (r.reconnected, r.moved, r.ratio) == (4, 1, 0.25)
    assert measures(account(h))[Metric.REMAPPED_RATIO] == 0.25


def test_clients_that_all_came_back_where_they_were_are_not_remapped():
    h = scale_out(("a", "app-1", "app-1"), ("b", "app-2", "app-2"))
    assert remapped(h).ratio == 0.0


def test_without_a_reconnect_the_remapped_ratio_is_undefined_not_zero():
    h = scale_out(("a", "app-1", "app-1"))
    h.sessions = [Session("a", "app-1", 0.0)]  # never cut
    assert remapped(h).ratio is None
    assert measures(account(h))[Metric.REMAPPED_RATIO] is None


def test_a_client_cut_for_good_did_not_reconnect_and_is_not_counted():
    h = scale_out(("a", "app-1", "app-4"), ("b", "app-2", "app-2"))
    h.sessions = [s for s in h.sessions if not (s.client == "a" and s.opened == 2.1)]
    assert (remapped(h).reconnected, remapped(h).moved) == (1, 0)


def test_a_reconnect_outside_every_change_is_not_a_remap():
    h = scale_out(("a", "app-1", "app-4"))
    h.sessions += [Session("b", "app-2", 0.0, 6.0), Session("b", "app-3", 6.1)]  # long after the change
    h.clients.append(ClientRecord("b", True))
    assert (remapped(h).reconnected, remapped(h).moved) == (1, 1)


def test_other_faults_are_not_topology_changes():
    h = scale_out(("a", "app-1", "app-2"))
    h.faults = [FaultEvent("kill-replica", "app-1", 1.0, 2.0)]
    assert remapped(h).ratio is None and account(h).p99_in_change_ms is None


def test_latency_in_a_change_counts_what_was_sent_while_it_ran_and_only_that():
    h = scale_out(("a", "app-1", "app-1"), ("b", "app-2", "app-2"))
    h.sent = [Sent("a-1", "a", 0.5), Sent("a-2", "a", 1.5), Sent("b-1", "b", 1.8)]
    h.received = [Received("a-1", "b", 0.501),                                # before the change: not counted
                  Received("a-2", "b", 1.52), Received("a-2", "b", 1.6),       # its first copy counts, 20 ms
                  Received("a-2", "a", 1.5001),                               # a sender's own copy: not counted
                  Received("b-1", "a", 2.2)]                                  # 400 ms
    assert [round(v) for v in latencies_in_change_ms(h)] == [20, 400]
    assert math.isclose(account(h).p99_in_change_ms, 20 + 0.99 * 380)
    h.faults = []
    assert account(h).p99_in_change_ms is None


def test_the_consistent_hash_scenario_fails_when_most_clients_moved():
    s = scenario.load("deploy-scaleout-hash-consistent")
    bound = {Metric.REMAPPED_RATIO: s.expect[Metric.REMAPPED_RATIO]}
    most = scale_out(*[(f"c{i}", "app-1", "app-2" if i % 4 else "app-1") for i in range(8)])
    assert judge(measures(account(most)), bound).validity is Validity.FAIL
    quarter = scale_out(*[(f"c{i}", "app-1", "app-4" if i % 4 == 0 else "app-1") for i in range(8)])
    assert judge(measures(account(quarter)), bound).validity is Validity.PASS
    plain = scenario.load("deploy-scaleout-hash").expect[Metric.REMAPPED_RATIO]
    assert judge(measures(account(quarter)), {Metric.REMAPPED_RATIO: plain}).validity is Validity.FAIL


def rolling() -> History:
    """a on app-1, b on app-2, c on app-3; a rolling restart's step on app-1 ran 1.0..1.5 (a cut at 1.0, back
    on app-2 at 1.1), then app-2's 2.0..2.5 (b cut at 2.0, back on app-3 at 2.1). c sends three messages;
    every one reaches both others, but what the test drops."""
    h = History(replicas=["app-1", "app-2", "app-3"],
                clients=[ClientRecord("a", True, 0), ClientRecord("b", True, 0), ClientRecord("c", True, 3)],
                sessions=[Session("a", "app-1", 0.0, 1.0), Session("a", "app-2", 1.1),
                          Session("b", "app-2", 0.0, 2.0), Session("b", "app-3", 2.1), Session("c", "app-3", 0.0)],
                faults=[FaultEvent("rolling-restart", "app-1", 1.0, 1.5, ("app-1",), 1.0),
                        FaultEvent("rolling-restart", "app-2", 2.0, 2.5, ("app-2",), 1.0)])
    h.sent = [Sent("c-1", "c", 1.05), Sent("c-2", "c", 1.5), Sent("c-3", "c", 6.0)]
    h.received = [Received(m, d, t + 0.01) for m, t in (("c-1", 1.05), ("c-2", 1.5), ("c-3", 6.0)) for d in "ab"]
    return h


def test_a_loss_on_the_path_through_the_replica_being_replaced_is_the_steps():
    h = rolling()
    h.received = [r for r in h.received if not (r.id == "c-1" and r.client == "a")]  # a was away from app-1
    acc = account(h)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (1, 1, 0)


def test_a_loss_on_another_replicas_path_or_after_the_steps_allowance_is_outside():
    h = rolling()
    # b was on app-2 then, untouched until 2.0, and c-2 reached it after: skipped, not in flight
    h.received = [r for r in h.received if not (r.id == "c-1" and r.client == "b")]
    h.received = [r for r in h.received if not (r.id == "c-3" and r.client == "a")]  # at 6.0: after every step
    acc = account(h)
    assert (acc.lost, acc.lost_in_fault, acc.lost_outside_fault) == (2, 0, 2)
    assert judge(measures(acc), scenario.load("deploy-pubsub-rolling-kill").expect).validity is Validity.FAIL


def test_the_close_codes_of_what_a_change_cut_are_counted_and_an_unknown_one_stays_unknown():
    h = scale_out(("a", "app-1", "app-1"), ("b", "app-2", "app-4"), ("c", "app-3", "app-3"))
    h.sessions = [Session(s.client, s.replica, s.opened, s.closed, {"a": 1006, "b": 1006}.get(s.client))
                  if s.closed is not None else s for s in h.sessions]
    h.sessions.append(Session("d", "app-1", 0.0, 9.0, 1001))  # long after the change: not its cut
    assert close_codes(h) == {1006: 2, None: 1}
    h.faults = []
    assert close_codes(h) == {}
