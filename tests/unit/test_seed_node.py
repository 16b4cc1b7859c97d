"""The seed article's own Node servers as app kinds: parsing, refusals, their adapters and image tag. Pure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from labs import scenario
from labs.errors import ImageError, ScenarioError
from labs.infra.images import NODE_DIR, Image, ImageSet, node_tag
from labs.protocols import for_app
from labs.protocols.seed_node import SeedNodeWsLink
from labs.scenario import AppKind, Broker, Events, Metric
from labs.settings import ROOT

WS = """
[topology]
app = "seed-node-ws"
broker = "seed-subscribe-glob"
[workload]
clients = 4
messages = 2
[expect]
delivered_ratio = 0.0
"""

SIO = """
[topology]
app = "seed-node-socketio"
broker = "redis-pubsub"
balance = "cookie"
[workload]
clients = 4
messages = 2
transport = "polling"
[expect]
cross_server_ratio = 1.0
"""


def parse(text: str) -> scenario.Scenario:
    return scenario.parse(text, name="t")


def test_the_node_ws_server_runs_as_written_or_fixed_by_its_broker():
    assert parse(WS).topology.app is AppKind.SEED_NODE_WS
    assert parse(WS).topology.broker is Broker.SEED_GLOB
    assert parse(WS.replace('"seed-subscribe-glob"', '"redis-pubsub"')).topology.broker is Broker.REDIS_PUBSUB
    assert parse(WS.replace("delivered_ratio = 0.0", "published_to_nobody = 8")).expect[Metric.PUBLISHED_TO_NOBODY]


def test_the_node_socketio_server_always_speaks_the_articles_events():
    s = parse(SIO)
    assert s.topology.app.socketio and s.workload.events is Events.ARTICLE
    assert parse(SIO.replace('"redis-pubsub"', '"none"')).topology.broker is Broker.NONE


@pytest.mark.parametrize("text, message", [
    (WS.replace('"seed-subscribe-glob"', '"none"'),
     "app = \"seed-node-ws\" takes broker seed-subscribe-glob (the article's subscribe('chat:*')) or "
     "redis-pubsub (the fix, pSubscribe('chat:*')), not none"),
    (WS.replace('"seed-subscribe-glob"', '"redis-streams"'), "not redis-streams"),
    (SIO.replace('"redis-pubsub"', '"seed-subscribe-glob"'),
     'app = "seed-node-socketio" takes broker none (adapter off) or redis-pubsub (@socket.io/redis-adapter)'),
    (SIO.replace("clients = 4", 'clients = 4\nevents = "lab"'),
     'workload.events = \'lab\' is ignored by app = "seed-node-socketio" (only app = "socketio" uses it)'),
    (SIO.replace("clients = 4", "clients = 4\npayload = 10"),
     'workload.payload = 10 is ignored by app = "seed-node-socketio" (only app = "websocket" or "seed-node-ws"'),
    (WS.replace("clients = 4", 'clients = 4\ntransport = "polling"'),
     'workload.transport = \'polling\' is ignored by app = "seed-node-ws"'),
    (WS.replace("delivered_ratio = 0.0", "trimmed = 0"), 'expect.trimmed is not measured for app = "seed-node-ws"'),
    (WS.replace("delivered_ratio = 0.0", "http_errors = 0"), 'expect.http_errors is not measured for app = "seed-node-ws"'),
    (SIO.replace("cross_server_ratio = 1.0", "published_to_nobody = 0"), "not measured for a socketio app"),
    (WS.replace('app = "seed-node-ws"', 'app = "seed-node-go"'), "unknown app 'seed-node-go'"),
])
def test_bad_node_scenarios_are_refused_with_the_key_and_value(text, message):
    with pytest.raises(ScenarioError) as info:
        parse(text)
    assert message in str(info.value)


def test_a_node_only_broker_on_the_python_socketio_app_is_refused():
    with pytest.raises(ScenarioError, match="a socketio app takes broker none, redis-pubsub"):
        parse(SIO.replace('"seed-node-socketio"', '"socketio"').replace('"redis-pubsub"', '"seed-subscribe-glob"'))


def test_a_bad_node_scenario_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(WS.replace('"seed-subscribe-glob"', '"kafka"'))
    r = subprocess.run([sys.executable, "-m", "labs", "run", str(path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "unknown broker 'kafka'" in lines[0]


def test_the_node_adapters_run_node_in_the_node_image_and_say_when_it_is_missing():
    ws, sio = for_app(AppKind.SEED_NODE_WS), for_app(AppKind.SEED_NODE_SOCKETIO)
    assert ws.replica_command() == ("node", "/opt/wslab-node/seed-ws.mjs")
    assert sio.replica_command() == ("node", "/opt/wslab-node/seed-socketio.mjs")
    assert for_app(AppKind.WEBSOCKET).replica_command() == ("/opt/venv/bin/python", "-m", "wslab_app")
    app, node = Image("wslab/app:a", "app"), Image("wslab/node:n", "node")
    assert ws.replica_image(ImageSet(app=app, redis=app, nginx=app, node=node)) is node
    assert for_app(AppKind.SOCKETIO).replica_image(ImageSet(app=app, redis=app, nginx=app, node=node)) is app
    with pytest.raises(ImageError, match=r"the node image is missing \(npm not found\); run `make images`"):
        sio.replica_image(ImageSet(app=app, redis=app, nginx=app, node_error="npm not found"))


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_message(self, msg_id, origin, seq):
        self.events.append(("message", msg_id))

    def on_ack(self, msg_id, replica, seq):
        self.events.append(("ack", msg_id))

    def on_nack(self, msg_id):
        self.events.append(("nack", msg_id))

    def on_trimmed(self, first, last, replayed):
        self.events.append(("trimmed", ""))


def test_the_node_ws_client_counts_others_frames_and_not_its_own_copy():
    sink = Sink()
    link = SeedNodeWsLink("c1", port=1, room="lobby", sink=sink)
    link._frame({"id": "c2-1", "ts": 1.0, "body": "", "sender": "c2"})  # relayed as the sender wrote it
    link._frame({"id": "c1-1", "ts": 1.0, "body": "", "sender": "c1"})  # its own, back from Redis
    link._frame({"type": "ack", "id": "c1-1"})
    link._frame({"ts": 1.0})  # not a message
    assert sink.events == [("message", "c2-1"), ("ack", "c1-1")]


def _copy_node_dir(tmp_path: Path) -> Path:
    target = tmp_path / "node"
    target.mkdir()
    for name in ("Dockerfile", "package.json", "package-lock.json", "seed-ws.mjs"):
        (target / name).write_bytes((NODE_DIR / name).read_bytes())
    return target


def test_the_node_image_tag_hashes_base_lock_and_servers_but_not_node_modules(tmp_path):
    d = _copy_node_dir(tmp_path)
    tag = node_tag("wslab/base:1", node_dir=d)
    assert re.fullmatch(r"wslab/node:[0-9a-f]{10}", tag) and node_tag("wslab/base:1", node_dir=d) == tag
    (d / "node_modules" / "ws").mkdir(parents=True)
    (d / "node_modules" / "ws" / "index.js").write_text("installed")
    assert node_tag("wslab/base:1", node_dir=d) == tag
    assert node_tag("wslab/base:2", node_dir=d) != tag
    (d / "package-lock.json").write_text((d / "package-lock.json").read_text().replace("8.23.0", "8.23.1"))
    changed = node_tag("wslab/base:1", node_dir=d)
    assert changed != tag
    (d / "seed-ws.mjs").write_text((d / "seed-ws.mjs").read_text() + "\n// edited\n")
    assert node_tag("wslab/base:1", node_dir=d) not in {tag, changed}


@pytest.mark.parametrize("name", ["seed-ws.mjs", "seed-socketio.mjs"])
def test_each_node_server_says_at_the_top_where_it_differs_from_the_article(name):
    text = (NODE_DIR / name).read_text()
    header = text.split("\nimport ", 1)[0]
    assert "differs from the article" in header and header.count("\n// -") >= 3
    # every line the lab added is marked, and the markers are explained in the header
    assert text.count("// lab") >= 5


def test_the_node_packages_are_pinned_by_the_lockfile():
    lock = (NODE_DIR / "package-lock.json").read_text()
    for package, version in {"ws": "8.23.0", "redis": "4.7.1", "socket.io": "4.8.4",
                             "@socket.io/redis-adapter": "8.3.0"}.items():
        assert re.search(rf'"node_modules/{re.escape(package)}": {{\s*"version": "{re.escape(version)}"', lock)


def test_make_scenario_seed_node_runs_every_seed_node_scenario():
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("SEED_NODE :=", 1)[1].split("\n\n", 1)[0].replace("\\", " ").split()
    assert sorted(listed) == [n for n in scenario.available() if n.startswith("seed-node-")]
    assert "scenario-seed-node: setup ## " in makefile
