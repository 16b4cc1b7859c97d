"""Hostile scenario files: each is refused with one line naming the file, the key and the value, before
anything starts (no traceback, no hang, no run that goes on until it is killed)."""

import math
import subprocess
import sys
import time

import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.settings import ROOT

WS = """
[topology]
replicas = 3
broker = "redis-pubsub"
[workload]
clients = 4
messages = 20
send_interval = 0.1
[expect]
lost = 0
"""

SIO = """
[topology]
app = "socketio"
broker = "redis-pubsub"
balance = "cookie"
[workload]
clients = 4
messages = 20
send_interval = 0.1
[expect]
handshake_ok_ratio = 1.0
"""

FAULT = '[[faults]]\nkind = "{kind}"\ntarget = "{target}"\nat = {at}\nheal_after = {heal}\n'


def faults(*specs: tuple[str, str, float, float]) -> str:
    return "".join(FAULT.format(kind=k, target=t, at=a, heal=h) for k, t, a, h in specs)


def refused(text: str, *parts: str) -> str:
    """`text` is refused by parse with one line that starts with the scenario's name and holds `parts`."""
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        scenario.parse(text, name="hostile")
    message = str(info.value)
    assert time.monotonic() - started < 5.0, "refusing must be quick"
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith("hostile"), message
    assert len(message) < 400, message
    for part in parts:
        assert part in message, (part, message)
    return message


HOSTILE = [
    # nesting and size: tomllib recurses, and dotted keys cost it quadratic time and memory
    pytest.param("a = " + "[" * 100_000 + "]" * 100_000, ("nested too deep", "line 1", "'a'"), id="deep-arrays"),
    pytest.param("a = " + "{b = " * 100_000 + "1" + "}" * 100_000, ("nested too deep", "'a'"), id="deep-tables"),
    pytest.param(WS + "unexpected = " + "[" * 2_000 + "]" * 2_000 + "\n", ("nested too deep", "line 11", "'unexpected'"),
                 id="deep-in-expect"),
    pytest.param("a." * 100_000 + "b = 1", ("dotted key", "line 1", "'a.a.a"), id="dotted-key-100000-parts"),
    pytest.param(WS + "x = {" + "a." * 50_000 + "b = 1}", ("dotted key", "line 11"), id="dotted-inline-key"),
    pytest.param('description = "' + "x" * (2 << 20) + '"\n' + WS, ("2,097,", "1,048,576"), id="2-MiB-text"),
    pytest.param(WS.replace("replicas = 3", "replicas = 1" + "0" * 5000), ("integer", "4300 digits", "'replicas'"),
                 id="5000-digit-int"),
    pytest.param(WS.replace("replicas = 3", "replicas = 1" + "0" * 400), ("replicas", "1000000"), id="400-digit-int"),
    pytest.param(WS.replace("lost = 0", "lost = 1" + "0" * 400), ("expect.lost", "1000000"), id="400-digit-expect"),
    pytest.param(WS + faults(("kill-replica", "app-2", "1" + "0" * 400, 0)),
                 ("at", "1000000"), id="400-digit-fault-at"),
    # planned work
    pytest.param(WS.replace("clients = 4", "clients = 1000").replace("messages = 20", "messages = 10000")
                 .replace("send_interval = 0.1", "send_interval = 0.0"),
                 ("planned sends 10,000,000", "clients x messages", "100,000"), id="10M-sends"),
    pytest.param(WS.replace("clients = 4", "clients = 1000").replace("messages = 20", "messages = 10"),
                 ("planned deliveries 9,990,000 (clients x messages x (clients-1)) exceed 2,000,000",),
                 id="10M-deliveries"),
    pytest.param(WS.replace("messages = 20", "messages = 10000").replace("send_interval = 0.1", "send_interval = 10"),
                 ("sending duration 100,000s", "messages x send_interval", "300s"), id="a-day-of-sending"),
    pytest.param(WS.replace("messages = 20", "messages = 100").replace("send_interval = 0.1", "rate = 0.1"),
                 ("sending duration 1,000s", "300s"),
                 id="slow-rate"),
    pytest.param(WS.replace("send_interval = 0.1", "send_interval = nan"), ("send_interval", "nan"), id="nan-interval"),
    # expectations: NaN, impossible, vacuous
    pytest.param(WS.replace("lost = 0", "lost = nan"), ("expect.lost = nan", "not a number"), id="lost-nan"),
    pytest.param(WS.replace("lost = 0", "lost = { max = nan }"), ("expect.lost", "nan"), id="lost-max-nan"),
    pytest.param(WS.replace("lost = 0", "lost = -1"), ("expect.lost = -1", "impossible", "integer >= 0"),
                 id="lost-negative"),
    pytest.param(WS.replace("lost = 0", "lost = 1.5"), ("expect.lost = 1.5", "whole number"), id="lost-fraction"),
    pytest.param(WS.replace("lost = 0", "lost = inf"), ("expect.lost = inf", "impossible"), id="lost-inf"),
    pytest.param(WS.replace("lost = 0", "lost = { min = 0.2, max = 0.8 }"), ("expect.lost", "0.2", "whole number"),
                 id="lost-between-integers"),
    pytest.param(WS.replace("lost = 0", "delivered_ratio = 2.0"), ("expect.delivered_ratio = 2.0", "[0, 1]"),
                 id="ratio-2"),
    pytest.param(WS.replace("lost = 0", "delivered_ratio = { min = 50, max = 100 }"),
                 ("expect.delivered_ratio", "min = 50", "[0, 1]"), id="ratio-in-percent"),
    pytest.param(WS.replace("lost = 0", "lost = { max = -inf }"), ("expect.lost", "-inf", "no possible value"),
                 id="lost-below-everything"),
    pytest.param(WS.replace("lost = 0", "lost = { min = -inf, max = inf }"),
                 ("expect.lost", "{min = -inf, max = inf}", "every possible value"), id="vacuous-infinite"),
    pytest.param(WS.replace("lost = 0", "lost = { min = 0 }"), ("expect.lost = {min = 0}", "every possible value"),
                 id="vacuous-count"),
    pytest.param(WS.replace("lost = 0", "delivered_ratio = { min = 0, max = 1 }"),
                 ("expect.delivered_ratio = {min = 0, max = 1}", "every possible value"), id="vacuous-ratio"),
    pytest.param(WS.replace("lost = 0", "max_gap_s = inf"), ("expect.max_gap_s = inf", "impossible"),
                 id="gap-inf"),
    pytest.param(SIO + "placement_max_min = 0.5\n", ("expect.placement_max_min = 0.5", ">= 1"), id="placement-0.5"),
    pytest.param(SIO + "reconnect_max_s = { max = -1 }\n", ("expect.reconnect_max_s", "max = -1"),
                 id="reconnect-negative"),
    pytest.param(WS.replace("lost = 0", "lost = true"), ("expect.lost", "True"), id="lost-bool"),
    # keys the chosen app ignores
    pytest.param(WS.replace("replicas = 3", 'replicas = 3\ncookie_name = "srv"'),
                 ("topology.cookie_name = 'srv'", 'app = "websocket"'), id="cookie-name-on-websocket"),
    pytest.param(SIO.replace('balance = "cookie"', 'balance = "hash"\ncookie_name = "srv"'),
                 ("topology.cookie_name = 'srv'", 'balance = "hash"'), id="cookie-name-without-cookie-balance"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\ntransport = "polling"'),
                 ("workload.transport = 'polling'", 'app = "websocket"'), id="transport-on-websocket"),
    pytest.param(WS.replace("replicas = 3", 'replicas = 3\napp = "seed-node-ws"')
                 .replace("clients = 4", "clients = 4\nsource_subnets = 4"),
                 ("workload.source_subnets = 4", 'app = "seed-node-ws"'), id="subnets-on-seed-node-ws"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nevents = "article"'),
                 ("workload.events = 'article'", 'app = "websocket"'), id="events-on-websocket"),
    pytest.param(SIO.replace("clients = 4", 'clients = 4\nevents = "node"'), ("unknown events 'node'", "article"),
                 id="unknown-events"),
    pytest.param(WS.replace("replicas = 3", "replicas = 3\nmaxlen = 10"),
                 ("topology.maxlen = 10", 'broker = "redis-pubsub"'), id="maxlen-on-pubsub"),
    pytest.param(SIO.replace("clients = 4", "clients = 4\npayload = 1024"),
                 ("workload.payload = 1024", 'app = "socketio"'), id="payload-on-socketio"),
    # faults
    pytest.param(WS.replace("[expect]", faults(("kill-replica", "app-2", 0.5, 1.0), ("partition-replica", "app-2", 1.0, 0.5))
                            + "[expect]"), ("fault 2", "'app-2'", "overlaps fault 1"), id="overlapping-replica-faults"),
    pytest.param(WS.replace("[expect]", faults(("pause-redis", "redis", 0.5, 1.0), ("restart-redis", "redis", 1.2, 0.1))
                            + "[expect]"), ("fault 2", "'redis'", "overlaps fault 1"), id="overlapping-redis-faults"),
    pytest.param(WS.replace("[expect]", faults(*[("kill-replica", "app-1", i * 0.001, 0) for i in range(1000)])
                            + "[expect]"), ("faults has 1,000 entries", "16"), id="1000-faults"),
    # a string where a table goes, a table where a number goes, and other shapes
    pytest.param('topology = "big"\n[workload]\n[expect]\nlost = 0\n', ("topology", "'big'", "table"),
                 id="string-for-table"),
    pytest.param('faults = "kill"\n' + WS, ("faults", "'kill'"), id="string-for-faults"),
    pytest.param('faults = [1, 2]\n' + WS, ("fault 1", "1", "table"), id="numbers-for-faults"),
    pytest.param(WS.replace("replicas = 3", "replicas = { n = 3 }"), ("replicas", "{'n': 3}"), id="table-for-number"),
    pytest.param(WS.replace("clients = 4", "clients = [4]"), ("clients", "[4]"), id="array-for-number"),
    pytest.param(WS.replace('broker = "redis-pubsub"', "broker = ['redis-pubsub']"), ("broker", "['redis-pubsub']"),
                 id="array-for-enum"),
    pytest.param(WS.replace('broker = "redis-pubsub"', "broker = { a = 1 }"), ("broker", "{'a': 1}"),
                 id="table-for-enum"),
    pytest.param('description = { a = 1 }\n' + WS, ("description", "{'a': 1}"), id="table-for-description"),
    pytest.param(WS.replace("[expect]", faults(("kill-replica", "app-2", "1979-05-27T07:32:00Z", 0)) + "[expect]"),
                 ("at", "datetime"), id="datetime-for-number"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom = ""'), ("room", "''"), id="empty-room"),
    pytest.param(WS.replace('broker = "redis-pubsub"', 'broker = ""'), ("unknown broker ''",), id="empty-broker"),
    pytest.param('"" = 1\n' + WS, ("unknown key ''",), id="empty-key"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom = "lobbyé"'), ("room", "'lobbyé'"), id="unicode-room"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom = "ｌｏｂｂｙ"'), ("room", "'ｌｏｂｂｙ'"),
                 id="fullwidth-room"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom = "lobby\\n"'), ("room", "'lobby\\n'"),
                 id="newline-room"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom = "x"\n"room.name" = "y"'), ("unknown key 'room.name'",),
                 id="quoted-dotted-key"),
    pytest.param(WS.replace("clients = 4", 'clients = 4\nroom.name = "y"'), ("room", "{'name': 'y'}"),
                 id="dotted-key-makes-a-table"),
    pytest.param(WS.replace("lost = 0", "lost.min = 0"), ("expect.lost = {min = 0}", "every possible value"),
                 id="dotted-vacuous"),
    pytest.param('description = "a\x00b"\n' + WS, ("not valid TOML", "line 1"), id="nul-byte"),
    pytest.param(WS.replace("replicas = 3", 'replicas = 3\n"' + "k" * 5000 + '" = 1'), ("unknown key 'kkkk",),
                 id="5000-char-key"),
]


@pytest.mark.parametrize("text, parts", HOSTILE)
def test_a_hostile_scenario_is_refused_with_one_line_naming_key_and_value(text, parts):
    refused(text, *parts)


def test_there_are_plenty_of_hostile_cases():
    assert len(HOSTILE) >= 16


def test_non_utf8_bytes_are_refused_naming_the_file_line_and_key(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'description = "caf\xe9"\n' + WS.encode())
    with pytest.raises(ScenarioError) as info:
        scenario.load(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for part in ("not UTF-8", "0xe9", "line 1", "'description'"):
        assert part in message, (part, message)


def test_a_file_over_one_mib_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_bytes(b"# " + b"x" * (3 << 20) + b"\n" + WS.encode())
    with pytest.raises(ScenarioError, match=r"huge\.toml: .*3,145,\d{3} bytes.*1,048,576"):
        scenario.load(str(path))


def test_a_file_name_with_a_newline_is_refused(tmp_path):
    path = tmp_path / "evil\n.toml"
    path.write_text(WS)
    with pytest.raises(ScenarioError, match="bad scenario file name") as info:
        scenario.load(str(path))
    assert "\n" not in str(info.value)


def test_a_directory_is_not_a_scenario_file(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ScenarioError, match="dir.toml"):
        scenario.load(str(tmp_path / "dir.toml"))


def test_a_utf8_byte_order_mark_is_tolerated(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + WS.encode())
    assert scenario.load(str(path)).workload.clients == 4


def test_negative_zero_is_read_as_zero():
    s = scenario.parse(WS.replace("send_interval = 0.1", "send_interval = 0.1\ndrain_quiet = 1.0")
                       .replace("lost = 0", "lost = -0.0\nunexpected = -0"), name="t")
    bound = s.expect[scenario.Metric.LOST]
    assert math.copysign(1.0, bound.min) == 1.0 and math.copysign(1.0, bound.max) == 1.0
    with_fault = scenario.parse(WS.replace("[expect]", faults(("kill-replica", "app-2", "-0.0", "-0.0")) + "[expect]"),
                                name="t")
    assert math.copysign(1.0, with_fault.faults[0].at) == 1.0


def test_faults_one_after_another_on_one_target_or_at_once_on_two_are_fine():
    s = scenario.parse(WS.replace("[expect]", faults(("kill-replica", "app-2", 0.5, 0.5), ("kill-replica", "app-2", 1.1, 0.5),
                                                     ("partition-replica", "app-1", 0.5, 1.0)) + "[expect]"), name="t")
    assert len(s.faults) == 3


@pytest.mark.parametrize("line", [
    "placement_max_min = inf", "reconnect_max_s = inf", "placement_max_min = 1.0", "reconnect_max_s = { max = 5 }",
    "pollers_with_400_ratio = 0.0", "session_unknown_400 = { min = 30 }", "unsent = 0",
    "dropped_on_killed_ratio = { min = 0.5, max = 1.0 }",
])
def test_bounds_inside_the_domain_are_accepted(line):
    assert scenario.parse(SIO + line + "\n", name="t").expect


def test_limits_every_shipped_scenario_fits_comfortably():
    for name in scenario.available():
        wl = scenario.load(name).workload
        sends = wl.clients * wl.messages
        assert sends * 10 <= scenario.MAX_SENDS, name
        assert wl.messages * sum(k * (k - 1) for k in wl.room_sizes()) * 10 <= scenario.MAX_DELIVERIES, name
        assert wl.send_duration * 10 <= scenario.MAX_SEND_DURATION_S, name


def cli(tmp_path, name: str, content: bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_bytes(content)
    return subprocess.run([sys.executable, "-m", "labs", "run", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("name, content, part", [
    ("latin1.toml", b'description = "caf\xe9"\n' + WS.encode(), "not UTF-8"),
    ("deep.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ("huge-work.toml", WS.replace("clients = 4", "clients = 1000").replace("messages = 20", "messages = 10000")
     .encode(), "planned sends 10,000,000"),
    ("nan.toml", WS.replace("lost = 0", "lost = nan").encode(), "expect.lost = nan"),
    ("overlap.toml", WS.replace("[expect]", faults(("pause-redis", "redis", 0.5, 1.0), ("restart-redis", "redis", 1.0, 0.1))
                                + "[expect]").encode(), "overlaps fault 1"),
])
def test_hostile_files_on_the_command_line_are_one_line_and_exit_2(tmp_path, name, content, part):
    r = cli(tmp_path, name, content)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("wslab: ") and part in lines[0] and name in lines[0], r.stderr
