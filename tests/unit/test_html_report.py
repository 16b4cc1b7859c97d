"""report.html from a hand-written run: self-contained, escaped, and its timeline derived by hand."""

import re

from labs import scenario
from labs.accounting.checker import account
from labs.accounting.history import FaultEvent, History, Received, Sent, Session
from labs.accounting.verdict import judge, measures
from labs.protocols.websocket import WebSocketProtocol
from labs.report.html import page
from labs.report.result import RunResult
from labs.report.series import timeline


def run(description: str = "a <script>alert(1)</script> & more") -> RunResult:
    text = f'description = "{description}"\n[topology]\n[workload]\n[expect]\nlost = 0\n'
    s = scenario.parse(text, name="t")
    # a, b on app-1, c on app-2; a sends at 0.00 and 0.25 s, b at 0.05 s. c misses a-2 (during a fault).
    h = History(replicas=["app-1", "app-2"],
                sessions=[Session("a", "app-1", -1.0), Session("b", "app-1", -1.0), Session("c", "app-2", -1.0)],
                sent=[Sent("a-1", "a", 0.0), Sent("b-1", "b", 0.05), Sent("a-2", "a", 0.25)],
                received=[Received("a-1", "b", 0.01), Received("a-1", "c", 0.01), Received("b-1", "a", 0.06),
                          Received("b-1", "c", 0.06), Received("a-2", "b", 0.26)],
                faults=[FaultEvent("pause-redis", "redis", 0.2, 0.3)])
    acc = account(h)
    values = measures(acc)
    return RunResult(scenario=s, protocol=WebSocketProtocol(), run_id="r1", stamp="s1", history=h, accounting=acc,
                     values=values, verdict=judge(values, s.expect), balancer_conf="upstream app { server <x>; }")


def test_the_timeline_counts_arrived_and_lost_per_100ms_of_send_time():
    # 0.0-0.1 s: a-1 and b-1, 2 recipients each, all arrived; 0.2-0.3 s: a-2, b got it, c did not
    assert timeline(run().history) == [(0.0, 4, 0), (0.2, 1, 1)]


def test_the_page_is_self_contained_and_escapes_every_text():
    text = page(run())
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text
    assert "server &lt;x&gt;;" in text
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", text)
    assert text.count("<svg") == 2 and "pause-redis redis" in text


def test_the_page_shows_the_verdict_and_why():
    text = page(run())
    assert 'class="fail">NOT as expected' in text and "lost = 1, declared = 0" in text
