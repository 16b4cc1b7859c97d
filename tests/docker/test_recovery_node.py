"""Socket.IO connection state recovery on real containers: the official socket.io-client recovers against
the seed Node server with @socket.io/redis-streams-adapter, and a matrix row holds its declared outcome."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from labs import scenario
from labs.infra.render import for_replicas, render_nginx
from labs.infra.stack import Stack, StackSpec
from labs.protocols import for_app

from .test_replica_frames import node

RECOVERING = "recovery-transport-close"


def health(stack: Stack, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/_lab/{name}/healthz", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def test_socket_io_client_recovers_its_session_and_what_it_missed(client, images, nothing_left):
    """The listener closes its transport after two messages and misses two: its CONNECT carries its pid and
    last offset, the two come before the answer, and socket.recovered is true. A client that had received
    nothing sends its pid alone and gets a new session."""
    s = scenario.load(RECOVERING)
    protocol = for_app(s.topology.app)
    spec = StackSpec(run_id=f"rec{uuid.uuid4().hex[:5]}", replicas=2, broker="redis-streams", images=images,
                     balancer_conf=render_nginx(for_replicas(2)), app_module=protocol.app_module,
                     app_command=protocol.replica_command(), app_image=protocol.replica_image(images).tag,
                     app_args=protocol.replica_args(s))
    with Stack(client, spec) as stack:
        out = node("recovery_frames.mjs", stack.port)
        replicas = [health(stack, name) for name in ("app-1", "app-2")]

    listener, fresh = out["listener"], out["fresh"]
    assert listener["recovered"] is True and listener["got"] == ["m1", "m2", "m3", "m4"], listener
    connects = [text for way, text in listener["frames"] if way == "out" and text.startswith("40")]
    assert len(connects) == 2 and connects[0] == "40", connects
    again = json.loads(connects[1][2:])
    assert set(again) == {"pid", "offset"}, again
    frames = listener["frames"]
    sent = frames.index(["out", connects[1]])
    answer = next(i for i, (way, text) in enumerate(frames) if i > sent and way == "in" and text.startswith("40{"))
    assert json.loads(frames[answer][1][2:])["pid"] == again["pid"]
    replayed = [text for _, text in frames[sent + 1:answer]]
    assert [json.loads(t[2:])[1]["id"] for t in replayed] == ["m3", "m4"], replayed
    assert fresh["recovered"] is False, fresh
    fresh_connects = [json.loads(t[2:] or "{}") for way, t in fresh["frames"] if way == "out" and t.startswith("40")]
    assert len(fresh_connects) == 2 and set(fresh_connects[1]) == {"pid"}, fresh_connects
    assert sum(r["restored"] for r in replicas) == 1 and all(r["adapter"] == "@socket.io/redis-streams-adapter"
                                                             for r in replicas), replicas


def test_a_transport_close_is_recovered_by_the_streams_server(run_once):
    """(run_once also checks that the run left nothing with its label.)"""
    result = run_once(RECOVERING)
    assert result.passed, result.verdict.reason
    recovered = result.values[scenario.Metric.RECOVERED_DROPS]
    restored = sum(r.get("restored", 0) for r in result.replicas.values())
    assert recovered == restored == 2, (recovered, result.replicas)
    assert sum(r.get("persisted", 0) for r in result.replicas.values()) >= 2
