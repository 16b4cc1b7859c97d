"""Socket.IO scenarios as data, the client's pure helpers, and bad input refused before anything starts."""

import subprocess
import sys

import pytest
from yarl import URL

from labs import scenario
from labs.errors import ScenarioError
from labs.protocols.base import source_address
from labs.protocols.socketio_link import request_kind
from labs.scenario import AppKind, Balance, Events, Metric, Transport
from labs.settings import ROOT

STICKY = ["sticky-round-robin-polling", "sticky-ip-hash-polling", "sticky-ip-hash-subnets", "sticky-hash-subnets",
          "sticky-cookie-polling", "sticky-websocket-round-robin", "socketio-no-manager", "socketio-redis-manager",
          "socketio-article-events", "sticky-cookie-failover"]

BASE = """
[topology]
app = "socketio"
balance = "cookie"
[workload]
clients = 4
messages = 4
send_interval = 0.5
[expect]
handshake_ok_ratio = 1.0
"""


def parse(text: str):
    return scenario.parse(text, name="t")


def test_every_sticky_scenario_is_shipped_valid_and_has_at_least_30_clients():
    for name in STICKY:
        s = scenario.load(name)
        assert s.topology.app is AppKind.SOCKETIO and s.workload.clients >= 30 and s.expect, name


def test_make_scenario_sticky_runs_exactly_the_sticky_set():
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("STICKY  :=", 1)[1].split("\n\n", 1)[0].replace("\\", " ").split()
    assert listed == STICKY
    # their HAProxy twins run beside them in `make scenario-balancers`
    shipped = [n for n in scenario.available() if n.startswith(("sticky-", "socketio-")) and not n.endswith("-haproxy")]
    assert sorted(shipped) == sorted(STICKY)


def test_the_sticky_set_covers_every_policy_and_transport():
    loaded = [scenario.load(n) for n in STICKY]
    # every policy a Socket.IO client can be balanced by ("room" hashes a WebSocket URL's room: partition-rooms;
    # plain `hash` is about what a scale-out moves: deploy-scaleout-hash)
    assert {s.topology.balance for s in loaded} == set(Balance) - {Balance.ROOM, Balance.HASH}
    assert scenario.load("partition-rooms").topology.balance is Balance.ROOM
    assert scenario.load("deploy-scaleout-hash").topology.balance is Balance.HASH
    assert {s.workload.transport for s in loaded} == set(Transport)
    assert any(s.faults for s in loaded) and any(s.failure for s in loaded)


def test_a_socketio_scenario_parses_its_own_metrics_and_the_failure_flag():
    s = parse("failure = true\n" + BASE + "placement_max_min = { max = 1.5 }\n")
    assert s.failure and s.expect[Metric.PLACEMENT_MAX_MIN].max == 1.5


def test_socketio_clients_speak_the_lab_events_unless_asked_for_the_articles():
    assert parse(BASE).workload.events is Events.LAB
    article = parse(BASE.replace("clients = 4", 'clients = 4\nevents = "article"'))
    assert article.workload.events is Events.ARTICLE


def test_a_socketio_scenario_can_declare_unsent():
    assert parse(BASE + "unsent = 0\n").expect[Metric.UNSENT].max == 0


@pytest.mark.parametrize("text, message", [
    (BASE.replace('balance = "cookie"', 'balance = "sticky"'), "unknown balance 'sticky'"),
    (BASE.replace("clients = 4", 'clients = 4\nevents = "article"').replace('app = "socketio"', 'app = "websocket"')
     .replace("handshake_ok_ratio", "lost").replace(" = 1.0", " = 0"), "workload.events = 'article'"),
    (BASE.replace("clients = 4", "clients = 4\npayload = 10"), "workload.payload = 10 is ignored by app = \"socketio\""),
    (BASE.replace('balance = "cookie"', 'balance = "ip-hash"\ncookie_name = "srv"'), 'with balance = "ip-hash"'),
    (BASE.replace('balance = "cookie"', 'balance = "cookie"\ncookie_name = "srv; evil"'), "cookie_name must match"),
    (BASE.replace('balance = "cookie"', 'balance = "cookie"\ncookie_name = "srv\\n"'), "cookie_name must match"),
    (BASE + "trimmed = 0\n", "expect.trimmed is not measured for a socketio app"),
    (BASE.replace('app = "socketio"', 'app = "websocket"').replace("handshake_ok_ratio = 1.0", "http_errors = 0"),
     'measured for app = "socketio" only'),
    (BASE + '[[faults]]\nkind = "kill-replica"\ntarget = "app-9"\nat = 0.5\n', "got 'app-9' (no such replica)"),
    ("failure = 1\n" + BASE, "failure must be true or false"),
    (BASE.replace('app = "socketio"', 'app = "socketio"\nbroker = "nats"'), "not nats"),
    (BASE.replace('app = "socketio"', 'app = "socketio"\nmax_disconnection_duration = 5'),
     'topology.max_disconnection_duration = 5 is ignored by app = "socketio" with broker = "none"'),
    (BASE.replace('app = "socketio"', 'app = "socketio"\nbroker = "redis-streams"\nmax_disconnection_duration = 0.5'),
     "max_disconnection_duration"),
])
def test_bad_socketio_scenarios_are_refused_with_the_key_and_value(text, message):
    with pytest.raises(ScenarioError) as info:
        parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize("edit, message", [
    (('balance = "cookie"', 'balance = "least-conn"'), "unknown balance 'least-conn'"),
    (('balance = "cookie"', 'balance = "cookie"\ncookie_name = "a;b"'), "cookie_name must match"),
    (("[expect]", '[[faults]]\nkind = "kill-replica"\ntarget = "app-4"\nat = 0.5\n[expect]'), "no such replica"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(*edit))
    r = subprocess.run([sys.executable, "-m", "labs", "run", str(path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wslab: ") and message in lines[0]


def test_clients_stand_for_distinct_24s_only_when_asked():
    assert source_address(0, 1) == "" and source_address(29, 1) == ""
    addresses = [source_address(i, 30) for i in range(30)]
    assert len({a.rsplit(".", 1)[0] for a in addresses}) == 30
    assert all(a.startswith("198.18.") for a in addresses)  # RFC 2544 benchmark range: header values only
    assert len({source_address(i, 3).rsplit(".", 1)[0] for i in range(30)}) == 3


def test_engine_io_requests_are_classified_by_their_url():
    base = "http://127.0.0.1:1/socket.io/?transport=polling&EIO=4&t=1"
    assert request_kind("GET", URL(base)) == "handshake"
    assert request_kind("GET", URL(base + "&sid=abc")) == "poll"
    assert request_kind("POST", URL(base + "&sid=abc")) == "send"
    assert request_kind("GET", URL("ws://127.0.0.1:1/socket.io/?transport=websocket&EIO=4")) == "websocket"
