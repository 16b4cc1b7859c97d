"""The Socket.IO table and result.json section, from hand-made accountings."""

import json
import math

from labs import scenario
from labs.checker import Check, Validity, Verdict
from labs.history import FaultEvent, Session
from labs.report import RunResult, table, to_json
from labs.scenario import Bound, Metric
from labs.sio_checker import account
from labs.sio_history import ClientRecord, Drop, SioHistory


def result(name: str, history: SioHistory, validity: Validity = Validity.PASS, sticky: str = "") -> RunResult:
    acc = account(history)
    verdict = Verdict(validity, (Check(Metric.HANDSHAKE_OK_RATIO, Bound(0, 0), 0.0),))
    return RunResult(scenario=scenario.load(name), run_id="r", stamp="s", accounting=acc.room, verdict=verdict,
                     history=history, nginx_conf="", socketio=acc, sticky=sticky)  # type: ignore[arg-type]


def test_a_declared_failure_reads_fails_as_expected_and_the_table_has_the_sticky_columns():
    rr = result("sticky-round-robin-polling", SioHistory(replicas=["app-1", "app-2", "app-3"],
                                                         clients=[ClientRecord("c1", "", False)]))
    text = table([rr])
    head, _, row = text.splitlines()[:3]
    for column in ("policy", "transport", "handshakes ok", 'HTTP 400 "Session ID unknown"', "clients per replica",
                   "cross-server room delivery", "verdict"):
        assert column in head
    assert "fails as expected" in row and "0/1" in row and "0 · 0 · 0" in row


def test_a_failure_scenario_that_did_not_fail_is_not_dressed_up():
    rr = result("sticky-round-robin-polling", SioHistory(), Validity.FAIL)
    assert "NOT as expected" in table([rr])


def test_json_says_infinity_in_words_and_carries_placement_and_failover():
    h = SioHistory(replicas=["app-1", "app-2"], clients=[ClientRecord("a", "", True)],
                   sessions=[Session("a", "app-1", 0.0, 1.0)], drops=[Drop("a", "app-1", 1.0, "x")],
                   faults=[FaultEvent("kill-replica", "app-1", 0.9, 2.0)])
    r = result("sticky-cookie-failover", h, sticky="nginx 1.22.1: open-source construction")
    out = to_json(r)["socketio"]
    json.dumps(out, allow_nan=False)  # strict JSON: no Infinity
    assert out["placement"] == {"app-1": 1, "app-2": 0} and out["placement_max_min"] == "inf"
    assert out["failover"]["reconnect_max_s"] == "inf" and out["sticky"].startswith("nginx 1.22.1")
    assert "cookie (open-source)" in table([r]) and "cookie stickiness — nginx 1.22.1" in table([r])
    assert math.isinf(r.socketio.failover.reconnect_max_s)
