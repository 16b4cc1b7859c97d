"""The table and result.json from hand-written histories: one renderer for every protocol."""

import json
import re

import pytest

from labs import scenario
from labs.accounting.checker import account
from labs.accounting.history import ClientRecord, History, Received, Sent, Session
from labs.accounting.verdict import judge, measures
from labs.protocols.websocket import WebSocketProtocol
from labs.report import files, plots
from labs.report.result import RunResult, to_json
from labs.report.table import table

WS = WebSocketProtocol()


def result(text: str, h: History) -> RunResult:
    s = scenario.parse(text, name="t")
    acc = account(h)
    values = measures(acc)
    return RunResult(scenario=s, protocol=WS, run_id="r", stamp="s", history=h, accounting=acc, values=values,
                     verdict=judge(values, s.expect), balancer_conf="")


def no_broker() -> History:
    """a and b on app-1, c on app-2; a's message reaches b only."""
    return History(replicas=["app-1", "app-2"], clients=[ClientRecord(c, True, 1) for c in "abc"],
                   sessions=[Session("a", "app-1", 0.0), Session("b", "app-1", 0.0), Session("c", "app-2", 0.0)],
                   sent=[Sent("a-1", "a", 1.0), Sent("b-1", "b", 1.0), Sent("c-1", "c", 1.0)],
                   received=[Received("a-1", "b", 1.001), Received("b-1", "a", 1.002)])


def test_a_websocket_scenario_that_demonstrates_a_failure_reads_fails_as_expected():
    text = "failure = true\n[topology]\n[workload]\n[expect]\ncross_server_ratio = 0\n"
    r = result(text, no_broker())
    assert r.passed and r.verdict_text == "fails as expected"
    summary, title, detail = table([r]).split("\n\n")
    head, _, row = summary.splitlines()
    assert head.startswith("| scenario | verdict ") and "| fails as expected |" in row
    assert "cross_server_ratio 0.00" in row  # the figure the scenario declares
    assert title == "WebSocket" and "0/4 (0%)" in detail.splitlines()[2]


def test_a_failed_expectation_is_shown_with_its_reason_under_the_table():
    r = result("[topology]\n[workload]\n[expect]\nlost = 0\n", no_broker())
    text = table([r])
    assert "NOT as expected" in text and "t: lost = 4, declared = 0" in text


def test_result_json_is_strict_json_with_every_metric_and_the_verdict():
    r = result("[topology]\n[workload]\n[expect]\nlost = 4\n", no_broker())
    out = json.loads(json.dumps(to_json(r), allow_nan=False, default=str))
    assert out["verdict"] == "as expected" and out["metrics"]["lost"] == 4 and out["counts"]["expected"] == 6
    assert round(out["latency_ms"]["max"], 6) == 2.0 and out["app"] == "websocket"


def test_a_run_writes_its_pictures_beside_result_json_and_report_md_links_them(tmp_path):
    r = result("[topology]\n[workload]\n[expect]\nlost = 4\n", no_broker())
    out = files.write(r, tmp_path, table([r]))
    assert out == tmp_path / "t" / "s" and (out / "result.json").is_file()
    for name in ("timeline.png", "placement.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5_000
    links = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", (out / "report.md").read_text())
    assert links == [("deliveries per second", "timeline.png"), ("clients per replica", "placement.png")]
    assert all((out / target).is_file() for _, target in links)
    assert [p.name for p in tmp_path.joinpath("t").iterdir()] == ["s"]  # no .partial left beside it


def test_a_picture_that_fails_leaves_no_results_directory_at_all(tmp_path, monkeypatch):
    def broken(result, out_dir):
        (out_dir / "timeline.png").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "run_pngs", broken)
    r = result("[topology]\n[workload]\n[expect]\nlost = 4\n", no_broker())
    with pytest.raises(RuntimeError, match="disk full"):
        files.write(r, tmp_path, table([r]))
    assert list(tmp_path.joinpath("t").iterdir()) == []
