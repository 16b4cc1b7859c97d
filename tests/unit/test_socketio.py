"""What only Socket.IO runs measure (Engine.IO's HTTP exchanges), and their table and result.json, from
hand-written histories."""

import json
import math

from labs import scenario
from labs.accounting.checker import account
from labs.accounting.history import ClientRecord, FaultEvent, Session
from labs.accounting.verdict import Validity, judge, measures
from labs.protocols.socketio import SocketIOHistory, SocketIOProtocol
from labs.protocols.socketio_link import HttpEvent
from labs.report.result import RunResult, to_json
from labs.report.table import table
from labs.scenario import Metric

REPLICAS = ["app-1", "app-2", "app-3"]
SIO = SocketIOProtocol()


def http(client: str, kind: str, status: int | None, detail: str = "") -> HttpEvent:
    return HttpEvent(client, 0.0, "POST" if kind == "send" else "GET", kind, status, detail)


def values(h: SocketIOHistory) -> dict:
    acc = account(h)
    return {**measures(acc), **SIO.measures(h, acc)}


def result(name: str, h: SocketIOHistory, sticky: str = "") -> RunResult:
    s = scenario.load(name)
    acc = account(h)
    v = {**measures(acc), **SIO.measures(h, acc)}
    return RunResult(scenario=s, protocol=SIO, run_id="r", stamp="s", history=h, accounting=acc, values=v,
                     verdict=judge(v, s.expect), balancer_conf="", sticky=sticky)


def test_round_robin_polling_every_client_that_polled_again_got_a_400_and_none_joined():
    h = SocketIOHistory(replicas=REPLICAS, clients=[ClientRecord("a", False, 5), ClientRecord("b", False, 5)])
    for c in ("a", "b"):
        h.http += [http(c, "handshake", 200), http(c, "send", 400, '"Invalid session abc"'),
                   http(c, "poll", 400, '"Invalid session abc"')]
    v = values(h)
    assert v[Metric.HANDSHAKE_OK_RATIO] == 0.0 and v[Metric.SESSION_UNKNOWN] == 4
    assert v[Metric.POLLERS_WITH_400_RATIO] == 1.0 and v[Metric.HTTP_ERRORS] == 4
    # nobody got in: nothing was expected anywhere, so delivery is undefined, not "perfect"
    assert v[Metric.DELIVERED_RATIO] is None and v[Metric.UNSENT] == 10


def test_a_400_for_another_reason_is_an_error_but_not_an_unknown_session():
    h = SocketIOHistory(http=[http("a", "handshake", 200), http("a", "poll", 400, '"Bad Request"'),
                              http("a", "poll", 200), http("a", "poll", None, "ServerDisconnectedError()")])
    v = values(h)
    assert v[Metric.SESSION_UNKNOWN] == 0 and v[Metric.HTTP_ERRORS] == 2 and v[Metric.POLLERS_WITH_400_RATIO] == 0.0


def test_node_engine_io_wording_counts_as_unknown_session_too():
    assert http("a", "poll", 400, '{"code":1,"message":"Session ID unknown"}').session_unknown


def test_a_websocket_only_client_is_no_poller():
    v = values(SocketIOHistory(http=[http("a", "websocket", 101)]))
    assert v[Metric.POLLERS_WITH_400_RATIO] is None and v[Metric.HTTP_ERRORS] == 0


def test_a_declared_failure_reads_fails_as_expected_and_the_table_has_the_sticky_columns():
    # 30 clients: each handshake answered, then its poll and its send both refused (60 x 400)
    names = [f"c{i:02d}" for i in range(1, 31)]
    h = SocketIOHistory(replicas=REPLICAS, clients=[ClientRecord(c, False, 5) for c in names],
                        http=[e for c in names for e in (http(c, "handshake", 200),
                                                         http(c, "poll", 400, "Invalid session x"),
                                                         http(c, "send", 400, "Invalid session x"))])
    r = result("sticky-round-robin-polling", h)
    assert r.verdict.validity is Validity.PASS
    summary, title, detail = table([r]).split("\n\n")
    assert "| fails as expected |" in summary.splitlines()[2] and title == "Socket.IO"
    head, _, row = detail.splitlines()[:3]
    for column in ("policy", "transport", "handshakes ok", 'HTTP 400 "Session ID unknown"', "clients per replica",
                   "cross-server room delivery", "unacked"):
        assert column in head
    assert "0/30" in row and "60 (30/30 pollers)" in row and "0 · 0 · 0" in row


def test_a_failure_scenario_that_did_not_fail_is_not_dressed_up():
    h = SocketIOHistory(replicas=REPLICAS, clients=[ClientRecord("c1", True, 0)],
                        sessions=[Session("c1", "app-1", 0.0)], http=[http("c1", "handshake", 200)])
    r = result("sticky-round-robin-polling", h)
    assert r.verdict.validity is Validity.FAIL and "NOT as expected" in table([r])


def test_json_says_infinity_in_words_and_carries_placement_and_failover():
    h = SocketIOHistory(replicas=["app-1", "app-2"], clients=[ClientRecord("a", True)],
                        sessions=[Session("a", "app-1", 0.0, 1.0)],
                        faults=[FaultEvent("kill-replica", "app-1", 0.9, 2.0)])
    r = result("sticky-cookie-failover", h, sticky="nginx 1.22.1: open-source construction")
    out = to_json(r)
    json.dumps(out, allow_nan=False, default=str)  # strict JSON: no Infinity
    assert out["placement"] == {"app-1": 1, "app-2": 0}
    assert out["failover"]["reconnect_max_s"] == "inf" and out["socketio"]["sticky"].startswith("nginx 1.22.1")
    assert "cookie (open-source)" in table([r]) and "cookie stickiness — nginx 1.22.1" in table([r])
    assert math.isinf(r.accounting.failover.reconnect_max_s)
    twin = result("sticky-cookie-failover-haproxy", h, sticky="HAProxy's own `cookie wslab_srv insert indirect nocache`")
    assert "cookie (HAProxy's)" in table([twin]) and "open-source" not in table([twin])


def test_a_websocket_run_and_a_socketio_run_each_get_their_own_detail_table_after_one_summary():
    from labs.protocols.websocket import WebSocketProtocol

    sio = result("sticky-round-robin-polling", SocketIOHistory(replicas=REPLICAS))
    s = scenario.load("pubsub")
    h = SocketIOHistory(replicas=REPLICAS)  # a plain History's fields are all the WebSocket row needs
    acc = account(h)
    ws = RunResult(scenario=s, protocol=WebSocketProtocol(), run_id="r", stamp="s", history=h, accounting=acc,
                   values=measures(acc), verdict=judge(measures(acc), s.expect), balancer_conf="")
    summary, *details = table([ws, sio]).split("\n\n")
    rows = [line for line in summary.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == 2 and rows[0].startswith("| pubsub ") and rows[1].startswith("| sticky-round-robin-polling ")
    assert details[0::2] == ["WebSocket", "Socket.IO"]
    ws_table, sio_table = details[1::2]
    assert "offered msg/s" in ws_table and "policy" not in ws_table and "sticky-round-robin-polling" not in ws_table
    assert "policy" in sio_table and "offered msg/s" not in sio_table and "| pubsub " not in sio_table
