"""The replicas against bad input and independent clients: Node's `ws` and `socket.io-client` (tests/node/),
through nginx, on real containers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

try:
    from labs.infra.render import for_replicas, render_nginx
    from labs.infra.stack import Stack, StackSpec
except ImportError:  # before the harness moved them
    from labs.render import for_replicas, render_nginx  # type: ignore[no-redef]
    from labs.stack import Stack, StackSpec  # type: ignore[no-redef]
from labs.scenario import Balance

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
POLICY = {"binary": 1003, "not-json": 1007, "json-array": 1008, "no-id": 1008, "id-null": 1008,
          "id-object": 1008, "id-bad-chars": 1008, "ts-string": 1008, "body-number": 1008}


def node(script: str, port: int, *args: str) -> dict[str, Any]:
    """Run one of the Node clients against nginx on `port`; its stdout is one JSON object."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("needs Node 20 and `make node-deps` (npm ci in tests/node)")
    r = subprocess.run(["node", str(NODE_DIR / script), "--port", str(port), *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stderr}"
    return json.loads(r.stdout)


def health(stack: Stack, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/_lab/{name}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def app_logs(stack: Stack) -> dict[str, str]:
    return {n: c.logs().decode(errors="replace") for n, c in stack.containers.items() if n.startswith("app-")}


def redis_clients(stack: Stack, kind: str) -> list[str]:
    """Names of Redis's client connections of one TYPE (normal, pubsub), as CLIENT LIST shows them."""
    code, out = stack.containers["redis"].exec_run(["redis-cli", "CLIENT", "LIST", "TYPE", kind])
    assert code == 0, out
    return [field.removeprefix("name=") for line in out.decode().splitlines()
            for field in line.split() if field.startswith("name=")]


def run_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:5]}"


def test_bad_frames_close_their_sender_with_a_policy_code_and_spare_the_room(client, images, nothing_left):
    spec = StackSpec(run_id=run_id("frm"), replicas=3, broker="redis-pubsub", images=images,
                     balancer_conf=render_nginx(for_replicas(3)))
    with Stack(client, spec) as stack:
        out = node("bad_frames.mjs", stack.port, "--healthy", "3", "--messages", "20")
        replicas = {n: health(stack, n) for n in ("app-1", "app-2", "app-3")}
        logs = app_logs(stack)
        pubsub_names = redis_clients(stack, "pubsub")

    for kind, code in POLICY.items():
        closed = out["bad"][kind]
        assert closed["code"] == code and closed["reason"], (kind, closed)
        assert closed["frames"] == [], (kind, closed)  # no ack for a bad frame
    assert all(b["code"] != 1011 for b in out["bad"].values())
    assert not out["timed_out"]
    for name, c in out["healthy"].items():  # the others in the room lost nothing and stayed connected
        assert c["got"] == c["expected"] == 40 and c["missing"] == [] and c["duplicates"] == 0, (name, c)
        assert c["acked"] == c["sent"] == 20 and c["closed"] is None, (name, c)
    assert {a["type"] for a in out["acks"]} == {"ack"} and all(set(a) == {"type", "id"} for a in out["acks"])

    assert sum(r["bad_frames"] for r in replicas.values()) == len(POLICY)
    closes: dict[str, int] = {}
    for r in replicas.values():
        for code, n in r["bad_frame_closes"].items():
            closes[code] = closes.get(code, 0) + n
    assert closes == {"1003": 1, "1007": 1, "1008": 7}
    assert sum(text.count("bad frame from") for text in logs.values()) == len(POLICY)
    assert not any("Traceback" in text for text in logs.values()), logs
    # every replica's subscriber names it in Redis (the harness finds a deaf replica by its absence)
    assert {"app-1", "app-2", "app-3"} <= set(pubsub_names), pubsub_names


def test_streams_acks_name_the_entry_and_a_resume_says_which_seqs_were_trimmed(client, images, nothing_left):
    # MAXLEN ~ 4 with 4-entry stream nodes: Redis trims whole nodes, so most of 20 entries go
    spec = StackSpec(run_id=run_id("str"), replicas=2, broker="redis-streams", images=images,
                     balancer_conf=render_nginx(for_replicas(2)), app_args=("--maxlen", "4"),
                     redis_args=("--save", "", "--appendonly", "no", "--stream-node-max-entries", "4"))
    with Stack(client, spec) as stack:
        base = f"ws://127.0.0.1:{stack.port}/ws?room=s1"
        with connect(f"{base}&client=a") as a:
            welcome = json.loads(a.recv(timeout=5))
            assert (welcome["type"], welcome["sid"], welcome["seq"]) == ("welcome", "0-0", 0)
            acks = []
            for i in range(20):
                a.send(json.dumps({"id": f"a-{i}", "ts": 1.0}))
                acks.append(json.loads(a.recv(timeout=5)))
            a.send(json.dumps({"id": "a-0", "ts": 1.0}))  # a resend: no second entry
            again = json.loads(a.recv(timeout=5))
        with connect(f"{base}&client=b&last=0-0&seq=0") as b:
            frames = [json.loads(b.recv(timeout=5))]
            while frames[-1]["type"] != "resume":
                frames.append(json.loads(b.recv(timeout=5)))
        gap, after_gap = reader_gap(stack, f"ws://127.0.0.1:{stack.port}/ws?room=s2")
        normal_names = redis_clients(stack, "normal")

    assert [(x["type"], x["id"], x["seq"]) for x in acks] == [("ack", f"a-{i}", i + 1) for i in range(20)]
    sids = [tuple(map(int, x["sid"].split("-"))) for x in acks]
    assert sids == sorted(sids) and len(set(sids)) == 20
    assert again == {"type": "ack", "id": "a-0"}

    welcome, *replayed, resume = frames
    assert welcome["type"] == "welcome" and all(f["type"] == "msg" for f in replayed)
    trimmed = resume["trimmed"]
    assert trimmed > 0 and resume["replayed"] == len(replayed) and trimmed + len(replayed) == 20
    assert resume["trimmed_seqs"] == [1, trimmed] and resume["after"] == "0-0"
    assert [f["seq"] for f in replayed] == list(range(trimmed + 1, 21))
    assert [f["sid"] for f in replayed] == [x["sid"] for x in acks[trimmed:]]
    # a replica frozen while 20 entries were added and trimmed tells its clients which ones they missed
    k = gap["trimmed"]
    assert gap == {"type": "resume", "after": "", "replayed": 0, "trimmed": k, "trimmed_seqs": [1, k]} and k > 0
    assert [f["seq"] for f in after_gap] == list(range(k + 1, 21))
    assert {"app-1", "app-2"} <= set(normal_names), normal_names


def reader_gap(stack: Stack, url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pause the replica of a listening client while a client on the other replica sends 20 messages; return
    the gap notice the listener gets once its replica reads again, and the messages after it."""
    with connect(f"{url}&client=x") as x, connect(f"{url}&client=y") as y, connect(f"{url}&client=z") as z:
        placed = {c: json.loads(c.recv(timeout=5))["replica"] for c in (x, y, z)}
        sender = next(c for c in (y, z) if placed[c] != placed[x])
        stack.containers[placed[x]].pause()
        try:
            for i in range(20):
                sender.send(json.dumps({"id": f"y-{i}", "ts": 1.0}))
                assert json.loads(sender.recv(timeout=5))["type"] == "ack"
        finally:
            stack.containers[placed[x]].unpause()
        notice = json.loads(x.recv(timeout=5))
        after = []
        while len(after) < 20 - notice.get("trimmed", 0):
            after.append(json.loads(x.recv(timeout=5)))
        return notice, after


def test_the_articles_socketio_client_gets_every_message_across_replicas(client, images, nothing_left):
    spec = StackSpec(run_id=run_id("art"), replicas=3, broker="redis-pubsub", images=images,
                     app_module="wslab_app.sio", balancer_conf=render_nginx(for_replicas(3, balance=Balance.COOKIE)))
    with Stack(client, spec) as stack:
        out = node("article_socketio.mjs", stack.port, "--clients", "6", "--messages", "5",
                   "--transports", "polling,websocket")
        refused = asyncio.run(bad_events(stack.port))
        replicas = {n: health(stack, n) for n in ("app-1", "app-2", "app-3")}
        logs = app_logs(stack)
        pubsub_names = redis_clients(stack, "pubsub")

    assert not out["timed_out"] and out["expected_per_client"] == 30
    for name, c in out["clients"].items():  # the sender too gets its own messages, as the article's server does
        assert c["got"] == c["expected"] == 30 and c["missing"] == [], (name, c)
        assert c["duplicates"] == 0 and c["mangled"] == 0 and c["acked"] == 5 and c["errors"] == [], (name, c)
    assert len({c["replica"] for c in out["clients"].values()}) >= 2, out  # the cookie spreads like round-robin

    assert all("error" in ack for ack in refused.values()), refused
    assert sum(r["bad_events"] for r in replicas.values()) == len(refused)
    assert not any("Traceback" in text for text in logs.values()), logs
    assert {"app-1", "app-2", "app-3"} <= set(pubsub_names), pubsub_names


async def bad_events(port: int) -> dict[str, Any]:
    """Malformed events from a python-socketio client: each must come back as an error ack."""
    import socketio

    sio = socketio.AsyncClient()
    await sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    try:
        return {
            "join, no argument": await sio.call("join-room", timeout=5),
            "join, a number": await sio.call("join-room", 5, timeout=5),
            "join, a bad room": await sio.call("join-room", "no spaces", timeout=5),
            "chat, three arguments": await sio.call("chat-message", ("r1", "m", "x"), timeout=5),
            "chat, a bad room": await sio.call("chat-message", ("../r", "m"), timeout=5),
            "chat, lab shape before joining": await sio.call("chat-message", {"id": "m1", "ts": 1}, timeout=5),
        }
    finally:
        await sio.disconnect()
