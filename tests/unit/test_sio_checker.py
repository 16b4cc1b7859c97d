"""The Socket.IO checker on hand-written histories: stickiness, placement, room delivery, failover."""

import math

from labs.checker import Validity
from labs.history import FaultEvent, Received, Sent, Session
from labs.scenario import Bound, Metric
from labs.checker import judge
from labs.sio_checker import account
from labs.sio_history import Ack, ClientRecord, Drop, HttpEvent, SioHistory

REPLICAS = ["app-1", "app-2", "app-3"]


def http(client: str, kind: str, status: int | None, detail: str = "", at: float = 0.0) -> HttpEvent:
    return HttpEvent(client, at, "POST" if kind == "send" else "GET", kind, status, detail)


def test_round_robin_polling_every_client_that_polled_again_got_a_400_and_none_joined():
    h = SioHistory(replicas=REPLICAS, clients=[ClientRecord("a", "", False, "x"), ClientRecord("b", "", False, "x")])
    for c in ("a", "b"):
        h.http += [http(c, "handshake", 200), http(c, "send", 400, '"Invalid session abc"'),
                   http(c, "poll", 400, '"Invalid session abc"')]
    acc = account(h)
    assert acc.metric(Metric.HANDSHAKE_OK_RATIO) == 0.0
    assert acc.metric(Metric.SESSION_UNKNOWN) == 4
    assert acc.metric(Metric.POLLERS_WITH_400_RATIO) == 1.0
    assert acc.metric(Metric.HTTP_ERRORS) == 4
    # nothing was sent: delivery is undefined, not "perfect"
    assert acc.metric(Metric.DELIVERED_RATIO) is None
    assert acc.placement == {"app-1": 0, "app-2": 0, "app-3": 0} and acc.placement_max_min is None


def test_a_400_for_another_reason_is_an_error_but_not_an_unknown_session():
    h = SioHistory(replicas=REPLICAS, clients=[ClientRecord("a", "", True)])
    h.http += [http("a", "handshake", 200), http("a", "poll", 400, '"Bad Request"'), http("a", "poll", 200),
               http("a", "poll", None, "ServerDisconnectedError()")]
    acc = account(h)
    assert acc.metric(Metric.SESSION_UNKNOWN) == 0 and acc.metric(Metric.HTTP_ERRORS) == 2
    assert acc.metric(Metric.POLLERS_WITH_400_RATIO) == 0.0


def test_node_engine_io_wording_counts_as_unknown_session_too():
    assert http("a", "poll", 400, '{"code":1,"message":"Session ID unknown"}').session_unknown


def test_a_websocket_only_client_is_no_poller():
    h = SioHistory(replicas=REPLICAS, clients=[ClientRecord("a", "", True)],
                   http=[http("a", "websocket", 101)])
    acc = account(h)
    assert acc.metric(Metric.POLLERS_WITH_400_RATIO) is None and acc.metric(Metric.HTTP_ERRORS) == 0


def test_placement_counts_each_clients_first_replica_and_an_empty_replica_makes_the_skew_infinite():
    sessions = [Session("a", "app-1", 1, 5), Session("a", "app-2", 6), Session("b", "app-1", 1),
                Session("c", "app-1", 1)]
    acc = account(SioHistory(replicas=REPLICAS, sessions=sessions))
    assert acc.placement == {"app-1": 3, "app-2": 0, "app-3": 0}
    assert acc.metric(Metric.REPLICAS_USED) == 1 and acc.metric(Metric.PLACEMENT_MAX_MIN) == math.inf
    even = account(SioHistory(replicas=REPLICAS[:2], sessions=[
        Session("a", "app-1", 1), Session("b", "app-1", 1), Session("c", "app-2", 1)]))
    assert even.metric(Metric.PLACEMENT_MAX_MIN) == 2.0


def room(sessions: list[Session], sent: list[Sent], received: list[Received], acked=None, **extra) -> SioHistory:
    acks = [Ack(m.id, m.at + 0.01, "") for m in sent if acked is None or m.id in acked]
    clients = [ClientRecord(c, "", True) for c in sorted({s.client for s in sessions})]
    return SioHistory(replicas=REPLICAS, clients=clients, sessions=sessions, sent=sent, acks=acks,
                      received=received, **extra)


def test_without_a_manager_cross_server_room_messages_are_lost():
    sessions = [Session("a", "app-1", 0), Session("b", "app-1", 0), Session("c", "app-2", 0)]
    h = room(sessions, [Sent("a-1", "a", 1.0)], [Received("a-1", "b", 1.1, "app-1")])
    acc = account(h)
    assert acc.metric(Metric.SAME_SERVER_RATIO) == 1.0 and acc.metric(Metric.CROSS_SERVER_RATIO) == 0.0
    assert acc.room.lost == 1 and acc.lost_undisturbed == 1
    assert judge(acc, {Metric.CROSS_SERVER_RATIO: Bound(0, 0)}).validity is Validity.PASS
    assert judge(acc, {Metric.DELIVERED_RATIO: Bound(1, 1)}).validity is Validity.FAIL


def test_an_unacknowledged_message_has_no_expected_recipients_but_is_counted():
    sessions = [Session("a", "app-1", 0), Session("b", "app-2", 0)]
    h = room(sessions, [Sent("a-1", "a", 1.0), Sent("a-2", "a", 1.1)], [Received("a-1", "b", 1.2, "app-1")],
             acked={"a-1"})
    acc = account(h)
    assert acc.room.expected == 1 and acc.room.lost == 0 and acc.metric(Metric.UNACKED) == 1


def test_duplicates_echoes_and_late_joiners_are_told_apart():
    sessions = [Session("a", "app-1", 0), Session("b", "app-1", 0), Session("c", "app-1", 1.05)]
    received = [Received("a-1", "b", 1.1, "app-1"), Received("a-1", "b", 1.2, "app-1"),  # duplicate
                Received("a-1", "a", 1.1, "app-1"),  # its own sender: unexpected
                Received("a-1", "c", 1.1, "app-1"),  # joined as it went out: extra, not unexpected
                Received("zz-9", "b", 1.1, "app-1")]  # never sent: unexpected
    acc = account(room(sessions, [Sent("a-1", "a", 1.0)], received))
    assert acc.room.delivered == 1 and acc.room.duplicated == 1
    assert acc.room.unexpected == 2 and acc.extra == 1


def failover_history(*, back_after: float | None = 0.8, dropped_elsewhere: bool = False) -> SioHistory:
    """a and b on app-2 (killed at 2.0), c on app-1; a and b drop at 2.05 and come back on app-1/app-3."""
    sessions = [Session("a", "app-2", 0, 2.05), Session("b", "app-2", 0, 2.05), Session("c", "app-1", 0)]
    drops = [Drop("a", "app-2", 2.05, "transport error"), Drop("b", "app-2", 2.05, "transport error")]
    if back_after is not None:
        sessions += [Session("a", "app-1", 2.05 + back_after), Session("b", "app-3", 2.05 + 0.3)]
    if dropped_elsewhere:
        sessions[2] = Session("c", "app-1", 0, 2.5)
        sessions.append(Session("c", "app-1", 2.6))
        drops.append(Drop("c", "app-1", 2.5, "transport error"))
    sent = [Sent("c-1", "c", 1.0), Sent("c-2", "c", 2.02), Sent("c-3", "c", 2.2), Sent("c-4", "c", 3.5)]
    received = [Received("c-1", "a", 1.1, "app-1"), Received("c-1", "b", 1.1, "app-1"),
                Received("c-4", "a", 3.6, "app-1"), Received("c-4", "b", 3.6, "app-1")]
    return room(sessions, sent, received, drops=drops,
                faults=[FaultEvent("kill-replica", "app-2", 2.0, 3.0)])


def test_failover_counts_who_dropped_how_long_they_took_and_what_they_missed():
    acc = account(failover_history())
    f = acc.failover
    assert f.killed == ("app-2",) and f.on_killed == 2 and f.dropped == 2
    assert acc.metric(Metric.DROPPED_ON_KILLED_RATIO) == 1.0 and acc.metric(Metric.DROPPED_ELSEWHERE) == 0
    assert acc.metric(Metric.RECONNECTED_RATIO) == 1.0
    assert math.isclose(acc.metric(Metric.RECONNECT_MAX_S), 0.8)
    # c-2 was in flight when they dropped: lost for them; c-3 went out while they were away: missed
    assert acc.lost_dropped == 2 and f.missed_while_away == 2
    assert acc.metric(Metric.LOST_UNDISTURBED) == 0
    verdict = judge(acc, {Metric.RECONNECT_MAX_S: Bound(max=5.0), Metric.LOST_UNDISTURBED: Bound(0, 0)})
    assert verdict.validity is Validity.PASS


def test_a_client_that_never_comes_back_has_an_infinite_reconnect_time():
    acc = account(failover_history(back_after=None))
    assert acc.metric(Metric.RECONNECTED_RATIO) == 0.0 and acc.metric(Metric.RECONNECT_MAX_S) == math.inf
    assert judge(acc, {Metric.RECONNECT_MAX_S: Bound(max=5.0)}).validity is Validity.FAIL


def test_a_drop_on_a_replica_that_was_not_killed_is_counted_as_elsewhere():
    acc = account(failover_history(dropped_elsewhere=True))
    assert acc.metric(Metric.DROPPED_ELSEWHERE) == 1


def test_failover_metrics_are_undefined_without_a_kill_and_make_the_verdict_unknown():
    acc = account(room([Session("a", "app-1", 0), Session("b", "app-2", 0)], [Sent("a-1", "a", 1.0)],
                       [Received("a-1", "b", 1.1, "app-1")]))
    assert acc.metric(Metric.DROPPED_ELSEWHERE) is None and acc.metric(Metric.RECONNECT_MAX_S) is None
    verdict = judge(acc, {Metric.DROPPED_ELSEWHERE: Bound(0, 0), Metric.LOST: Bound(0, 0)})
    assert verdict.validity is Validity.UNKNOWN and "dropped_elsewhere" in verdict.reason
