"""The summary and the detail tables per kind, from hand-written histories and literal scenarios."""

import math

import pytest

from labs import scenario
from labs.accounting.checker import account
from labs.accounting.cluster import cluster_measures
from labs.accounting.history import ClientRecord, FaultEvent, History, Received, Sent, Session
from labs.accounting.verdict import Validity, judge, measures, unknown
from labs.protocols import for_app
from labs.protocols.socketio import SocketIOHistory
from labs.report.result import RunResult
from labs.report.summary import figure, key_figure, key_metric
from labs.report.swarm_cells import containers_per_node, new_tasks, node_changes
from labs.report.table import table
from labs.scenario import Metric

SUMMARY = ["scenario", "verdict", "delivered", "lost", "duplicated", "p50 / p99 ms", "key figure"]


def room(cls=History) -> History:
    """a and b on app-1, c on app-2, every message delivered to both others after 1 to 4 ms."""
    return cls(replicas=["app-1", "app-2"], clients=[ClientRecord(c, True, 1) for c in "abc"],
               sessions=[Session("a", "app-1", 0.0), Session("b", "app-1", 0.0), Session("c", "app-2", 0.0)],
               sent=[Sent(f"{c}-1", c, 1.0) for c in "abc"],
               received=[Received(f"{c}-1", d, 1.0 + (i + 1) / 1000) for i, (c, d) in
                         enumerate((c, d) for c in "abc" for d in "abc" if c != d)])


def run(name: str, h: History, **extra) -> RunResult:
    s = scenario.load(name)
    protocol = for_app(s.topology.app)
    acc = account(h)
    values = {**measures(acc), **protocol.measures(h, acc)}
    if s.topology.broker.cluster:
        values.update(cluster_measures(h))
    return RunResult(scenario=s, protocol=protocol, run_id="r", stamp="s", history=h, accounting=acc,
                     values=values, verdict=judge(values, s.expect), balancer_conf="", **extra)


def swarm_run() -> RunResult:
    h = room()
    h.faults = [FaultEvent("kill-node", "node-3", 0.5, 1.5)]
    events = [(-1.0, "node-1: ready/active"), (-1.0, "node-3: ready/active"),
              (-1.0, "app-2 task aaa111: running on node-3"), (0.5, "fault kill-node node-3 applied"),
              (5.1, "node-3: down/active"), (5.3, "app-2 task bbb222: pending on node-3"),
              (9.0, "node-3: ready/active"), (14.2, "app-2 task bbb222: running on node-3")]
    return run("swarm-node-loss-pubsub", h, nodes={"app-1": "node-2", "app-2": "node-3", "redis": "node-1",
                                                   "nginx": "node-1"}, swarm_events=events)


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) of every table in the output; the summary's title is ""."""
    out, title = [], ""
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if len(lines) == 1 and not lines[0].startswith("|"):
            title = lines[0]
            continue
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
        out.append((title, cells[0], cells[1:]))
    return out


def test_a_mixed_command_gives_a_summary_of_every_run_and_one_detail_table_per_kind_without_empty_columns():
    results = [run("pubsub", room()), run("fault-pubsub-kill-replica", room()),
               run("sticky-cookie-polling", room(SocketIOHistory)), run("cluster-sharded", room()),
               run("seed-node-glob", room()), run("no-broker", room()), swarm_run()]
    (_, head, rows), *details = tables(table(results))
    assert head == SUMMARY and [r[0] for r in rows] == [r.scenario.name for r in results]
    assert [(title, [r[0] for r in rows]) for title, _, rows in details] == [
        ("WebSocket", ["pubsub", "no-broker"]),
        ("WebSocket under faults", ["fault-pubsub-kill-replica", "swarm-node-loss-pubsub"]),
        ("Socket.IO", ["sticky-cookie-polling"]),
        ("Redis Cluster", ["cluster-sharded"]),
        ("seed-node ws", ["seed-node-glob"]),
        ("Swarm", ["swarm-node-loss-pubsub"]),
    ]
    for title, columns, rows in details:
        assert columns[0] == "scenario" and "verdict" not in columns
        for i, column in enumerate(columns):
            assert any(row[i] not in ("", "-") for row in rows), (title, column)
    by_title = {title: columns for title, columns, _ in details}
    assert "offered msg/s" in by_title["WebSocket"] and "policy" not in by_title["WebSocket"]
    assert "recovered after reconnect" in by_title["WebSocket under faults"]
    assert "bus bytes/msg" not in by_title["Redis Cluster"]  # nothing probed the bus here: "-" in every row
    assert "failover (killed replica)" not in by_title["Socket.IO"]  # nothing was killed
    assert by_title["Swarm"] == ["scenario", "containers per node", "node changes (s)", "new tasks running (s)"]


def test_a_command_of_one_kind_prints_the_summary_and_that_one_detail_table():
    text = table([run("no-broker", room()), run("pubsub", room())])
    assert [title for title, _, _ in tables(text)] == ["", "WebSocket"]


def test_runs_on_both_balancers_get_a_balancer_column_in_the_summary():
    (_, head, rows), *_ = tables(table([run("pubsub", room()), run("pubsub-haproxy", room())]))
    assert head == [SUMMARY[0], "balancer", *SUMMARY[1:]]
    assert [row[:2] for row in rows] == [["pubsub", "nginx"], ["pubsub-haproxy", "haproxy"]]
    (_, head, _), *_ = tables(table([run("pubsub-haproxy", room())]))
    assert head == SUMMARY


def test_the_pubsub_headline_stays_under_the_websocket_table():
    text = table([run("no-broker", room()), run("pubsub", room())])
    detail = text.split("\n\nWebSocket\n\n")[1]
    assert detail.splitlines()[-1].startswith("pubsub p50 3.5 ms = 1.0x no-broker's 3.5 ms at 120 msg/s offered")


def test_a_summary_row_says_the_verdict_deliveries_loss_outside_the_fault_and_latency():
    h = room()
    h.received = h.received[:5]  # c-1 never reached b
    h.faults = [FaultEvent("kill-replica", "app-2", 0.0, 0.5)]  # c's replica: within its reach
    [row] = tables(table([run("fault-pubsub-kill-replica", h)]))[0][2]
    assert row == ["fault-pubsub-kill-replica", "as expected", "5/6 (83%)", "1 (0 outside the fault)", "0",
                   "3.0 / 5.0", "lost_in_fault 1"]


def test_the_reason_of_a_verdict_is_under_the_summary():
    h = room()
    h.received = h.received[:5]
    (_, _, [row]), *_ = tables(table([run("pubsub", h)]))
    assert row[:4] == ["pubsub", "NOT as expected", "5/6 (83%)", "1"]
    reason = table([run("pubsub", h)]).split("\n\n")[0].splitlines()[3]
    assert reason.startswith("pubsub: ") and "lost = 1, declared = 0" in reason


def test_what_was_not_measured_shows_as_a_dash():
    quiet = run("pubsub", History(replicas=["app-1"], clients=[ClientRecord("a", True, 0)],
                                  sessions=[Session("a", "app-1", 0.0)]))
    [row] = tables(table([quiet]))[0][2]
    assert row[SUMMARY.index("p50 / p99 ms")] == "-" and row[SUMMARY.index("key figure")] == "delivered_ratio -"


def test_a_run_whose_checker_crashed_has_a_verdict_and_dashes():
    r = run("pubsub", room())
    r.accounting, r.values, r.verdict = None, {}, unknown("checker failed: boom", r.scenario.expect)
    (_, _, [row]), (_, columns, [cells]) = tables(table([r]))
    assert r.verdict.validity is Validity.UNKNOWN
    assert row == ["pubsub", "unknown", "-", "-", "-", "-", "delivered_ratio -"]
    assert columns == ["scenario"] and cells == ["pubsub"]  # no column has a value left


def expect(lines: str):
    return key_metric(scenario.parse(f"[topology]\n[workload]\n[expect]\n{lines}\n", name="t"))


@pytest.mark.parametrize("declared, key", [
    # the guards and the summary's own figures come last, whatever their order
    ("misrouted = 0\nlost = 0\nlost_in_fault = { min = 1 }", Metric.LOST_IN_FAULT),
    # a range before an exact value
    ("replicas_used = 3\nmax_gap_s = { max = 2.0 }", Metric.MAX_GAP_S),
    # an exact figure before "all of it" (a ratio of 1), that before "none of it" (a count of 0)
    ("published_to_nobody = 0\ncross_server_ratio = 1.0\nreplicas_used = 3", Metric.REPLICAS_USED),
    ("published_to_nobody = 0\ncross_server_ratio = 1.0", Metric.CROSS_SERVER_RATIO),
    ("unexpected = 0\npublished_to_nobody = 0", Metric.PUBLISHED_TO_NOBODY),
    ("cross_server_ratio = 0.0\nsame_server_ratio = 1.0", Metric.CROSS_SERVER_RATIO),
    # among equals, what only the protocol or broker measures before the room accounting
    ("same_server_ratio = 0.0\npublished_to_nobody = 240", Metric.PUBLISHED_TO_NOBODY),
    # only the summary's figures and guards: the first summary figure, then the first guard
    ("misrouted = 0\nduplicated = 0\ndelivered_ratio = 1.0", Metric.DUPLICATED),
    ("misrouted = 0\nunexpected = 0", Metric.MISROUTED),
])
def test_the_key_figure_is_chosen_from_what_the_scenario_declares(declared, key):
    assert expect(declared) is key


@pytest.mark.parametrize("name, key", [
    ("no-broker", Metric.CROSS_SERVER_RATIO), ("pubsub", Metric.DELIVERED_RATIO),
    ("fault-pubsub-kill-replica", Metric.LOST_IN_FAULT), ("fault-streams-kill-replica", Metric.RECOVERED),
    ("fault-streams-trimmed", Metric.TRIMMED), ("fault-pubsub-pause-redis", Metric.DISTURBED),
    ("fault-jetstream-partition", Metric.LOST), ("seed-node-glob", Metric.PUBLISHED_TO_NOBODY),
    ("seed-node-pubsub", Metric.PUBLISHED_TO_NOBODY),
    ("cluster-rooms-sharded", Metric.BUS_BYTES_PER_MESSAGE), ("cluster-sharded-kill-master", Metric.RESUBSCRIBE_MAX_S),
    ("sticky-round-robin-polling", Metric.SESSION_UNKNOWN), ("sticky-cookie-polling", Metric.PLACEMENT_MAX_MIN),
    ("sticky-cookie-failover", Metric.RECONNECT_MAX_S), ("sticky-hash-subnets", Metric.REPLICAS_USED),
    ("socketio-no-manager", Metric.CROSS_SERVER_RATIO),
])
def test_shipped_scenarios_get_the_figure_they_are_about(name, key):
    assert key_metric(scenario.load(name)) is key


def test_every_shipped_scenario_has_a_key_figure():
    assert all(key_metric(scenario.load(name)) is not None for name in scenario.available())


@pytest.mark.parametrize("metric, value, text", [
    (Metric.LOST_IN_FAULT, 183.0, "183"), (Metric.CROSS_SERVER_RATIO, 1.0, "1.00"),
    (Metric.BUS_BYTES_PER_MESSAGE, 3472.4, "3,472"), (Metric.RESUBSCRIBE_MAX_S, 2.418, "2.42"),
    (Metric.RECONNECT_MAX_S, math.inf, "never"), (Metric.PLACEMENT_MAX_MIN, math.inf, "∞"),
    (Metric.REPLICAS_USED, None, "-"),
])
def test_a_figure_reads_as_its_metric_counts(metric, value, text):
    assert figure(metric, value) == text


def test_a_key_figure_nothing_measured_names_its_metric_and_a_dash():
    # the replicas' PUBLISH counts were never read: how many reached nobody is unknown, not 0
    assert key_figure(run("seed-node-pubsub", room())) == "published_to_nobody -"


def test_the_swarm_cells_say_where_each_container_ran_and_what_swarm_said_after_its_first_report():
    r = swarm_run()
    assert containers_per_node(r.nodes) == "node-1: nginx, redis · node-2: app-1 · node-3: app-2"
    assert node_changes(r.swarm_events) == "node-3 down/active +5.10, node-3 ready/active +9.00"
    assert new_tasks(r.swarm_events) == "app-2 on node-3 +14.20"
    assert node_changes([]) == new_tasks([]) == "-"


def test_a_deploy_gets_its_own_table_with_what_the_change_cut_and_where_clients_went():
    h = room()
    h.sessions = [Session("a", "app-3", 0.0, 1.2, 1001), Session("a", "app-1", 1.3), Session("b", "app-1", 0.0),
                  Session("c", "app-2", 0.0)]
    h.faults = [FaultEvent("scale-in", "app-3", 1.0, 1.5, ("app-3",))]
    text = table([run("deploy-scalein-pubsub", h), run("pubsub", room())])
    (_, _, _), *details = tables(text)
    by_title = {title: (columns, rows) for title, columns, rows in details}
    columns, [row] = by_title["WebSocket under topology changes"]
    cells = dict(zip(columns, row))
    assert cells["change"] == "scale-in app-3 (no shutdown timeout)"
    assert (cells["drops"], cells["back"], cells["remapped"], cells["close codes"]) == ("1", "1/1", "1/1 (1.00)", "1001 ×1")
    assert "WebSocket" in by_title and "remapped" not in by_title["WebSocket"][0]


def test_a_deploy_and_its_haproxy_twin_stand_side_by_side_with_their_balancer():
    h = room()
    h.sessions = [Session("a", "app-3", 0.0, 1.2, 1001), Session("a", "app-1", 1.3), Session("b", "app-1", 0.0)]
    h.faults = [FaultEvent("scale-in", "app-3", 1.0, 1.5, ("app-3",))]
    text = table([run("deploy-scalein-pubsub", h), run("deploy-scalein-pubsub-haproxy", h)])
    (_, summary_columns, summary_rows), *details = tables(text)
    assert [dict(zip(summary_columns, r))["balancer"] for r in summary_rows] == ["nginx", "haproxy"]
    by_title = {title: (columns, rows) for title, columns, rows in details}
    columns, rows = by_title["WebSocket under topology changes"]
    assert [dict(zip(columns, r))["balancer"] for r in rows] == ["nginx", "haproxy"]
