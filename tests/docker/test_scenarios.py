"""The two foundation scenarios (and the seed article's bug) on real containers."""

from __future__ import annotations

import json

from labs.report import table


def test_without_a_broker_messages_reach_only_the_senders_replica(run_once, nothing_left):
    result = run_once("no-broker")
    a = result.accounting
    assert a.placement == {"app-1": 4, "app-2": 4, "app-3": 4}
    assert a.same_expected > 0 and a.same_delivered == a.same_expected
    assert a.cross_expected > 0 and a.cross_delivered == 0
    assert a.duplicated == 0 and a.unexpected == 0
    assert result.passed, result.verdict.reason


def test_with_redis_pubsub_every_message_reaches_every_other_client_once(run_once, nothing_left):
    result = run_once("pubsub")
    a = result.accounting
    assert a.expected == a.sent * (sum(a.placement.values()) - 1) > 0
    assert a.delivered == a.expected and a.lost == 0 and a.duplicated == 0
    assert a.cross_delivered == a.cross_expected > 0
    assert 0 < a.percentile_ms(0.5) <= a.percentile_ms(0.99)
    assert result.passed, result.verdict.reason
    assert all(r["ok"] and r["published"] > 0 for r in result.replicas.values())


def test_partitioning_by_room_delivers_everything_without_a_broker(run_once, nothing_left):
    result = run_once("partition-rooms")
    a = result.accounting
    assert a.expected > 0 and a.delivered == a.expected and a.lost == 0
    # every member of a room on one replica: no delivery had to cross, and all three replicas hold rooms
    assert a.cross_expected == 0 and a.same_delivered == a.expected
    assert len([n for n in a.placement.values() if n]) == 3
    assert result.passed, result.verdict.reason


def test_the_seed_articles_subscribe_glob_delivers_nothing_at_all(run_once, nothing_left):
    result = run_once("seed-glob")
    assert result.accounting.sent > 0 and result.accounting.delivered == 0
    assert result.passed, result.verdict.reason


def test_scenario_pubsub_rows_and_results_say_what_each_run_did(run_once, nothing_left):
    """The table and the results directory `make scenario-pubsub` prints and writes, of the runs above
    (tests/unit/test_cli.py checks that `labs run` prints that table, writes each run and exits 0)."""
    text = table.table([run_once("no-broker"), run_once("pubsub")])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "0/" in rows["no-broker"].split("|")[11] and "(0%)" in rows["no-broker"]
    assert "(100%)" in rows["pubsub"].split("|")[11]
    for name in ("no-broker", "pubsub"):
        run_dir = run_once.written(name)
        result = json.loads((run_dir / "result.json").read_text())
        assert result["verdict"] == "as expected"
        assert result["placement"] == {"app-1": 4, "app-2": 4, "app-3": 4}
        assert {"app", "redis", "nginx"} <= set(result["images"])
        assert "upstream app" in (run_dir / "nginx.conf").read_text()
        assert (run_dir / "report.md").exists() and (run_dir / "logs" / "app-1.log").stat().st_size > 0
    assert not list(run_once.results.glob("*/.*.partial"))
