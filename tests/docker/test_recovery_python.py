"""socket.io-client's connection state recovery against the lab's python-socketio replicas (broker
redis-streams), through nginx round-robin, with the replica holding the client's session SIGKILLed."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from labs import scenario
from labs.brokers import STREAMS_ARGS
from labs.infra.render import for_replicas, render_nginx
from labs.infra.stack import Stack, StackSpec
from labs.scenario import Balance

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
#: max_disconnection_duration of the replicas, and how long the "away" client stays away (past it and the
#: one-second renewal of a connected session's time to live)
MAX_DISCONNECTION_S = 8
AWAY_MS = (MAX_DISCONNECTION_S + 2) * 1000
#: messages sent, one every 20 ms: the receiver's two drops and the cut client's fall inside the 8 s of sending
MESSAGES = 400


def health(stack: Stack, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/_lab/{name}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def run_client(stack: Stack) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """Run recovery_socketio.mjs; SIGKILL the replica it names, trim the stream before the id it names, or
    stop a replica gracefully (its /healthz read first), when it asks. Returns its report, the replicas
    killed and stopped, and the stopped one's /healthz."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("needs Node 20 and `make node-deps` (npm ci in tests/node)")
    proc = subprocess.Popen(["node", str(NODE_DIR / "recovery_socketio.mjs"), "--port", str(stack.port),
                             "--away-ms", str(AWAY_MS), "--messages", str(MESSAGES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed, stopped, last_words, report = "", "", {}, None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "kill" in msg:
                killed = msg["kill"]
                container = stack.containers[killed]
                container.kill()
                container.wait(condition="not-running")
            elif "stop" in msg:
                stopped = msg["stop"]
                last_words = health(stack, stopped)
                stack.containers[stopped].stop(timeout=10)
            elif "trim" in msg:
                code, said = stack.containers["redis"].exec_run(["redis-cli", "XTRIM", msg["trim"], "MINID",
                                                                 msg["minid"]])
                assert code == 0 and int(said) > 0, said
            if {"kill", "trim", "stop"} & msg.keys():
                proc.stdin.write("done\n")
                proc.stdin.flush()
            else:
                report = msg
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert code == 0 and report is not None, f"recovery_socketio.mjs exited {code}:\n{proc.stderr.read()}"
    return report, killed, stopped, last_words


def test_the_official_client_recovers_after_its_replica_is_sigkilled(client, images, nothing_left):
    spec = StackSpec(run_id=f"rec{uuid.uuid4().hex[:5]}", replicas=3, broker="redis-streams", images=images,
                     app_module="wslab_app.sio", redis_args=STREAMS_ARGS,
                     app_args=("--max-disconnection-duration", str(MAX_DISCONNECTION_S), "--maxlen", "10000"),
                     balancer_conf=render_nginx(for_replicas(3, balance=Balance.ROUND_ROBIN)))
    with Stack(client, spec) as stack:
        out, killed, stopped, last_words = run_client(stack)
        survivors = {n: health(stack, n) for n in ("app-1", "app-2", "app-3") if n not in (killed, stopped)}
        survivors[stopped] = last_words  # what it had counted just before it was stopped
        logs = {n: c.logs().decode(errors="replace") for n, c in stack.containers.items() if n.startswith("app-")}

    receiver, away, cut = out["receiver"], out["away"], out["cut"]
    print(json.dumps({"killed": killed, "stopped": stopped, **{name: [(c["recovered"], c["away_ms"]) for c in out[name]["connects"]]
                                         for name in ("receiver", "away", "cut")},
                      "replayed": {n: r["recovery"].get("replayed", 0) for n, r in survivors.items()},
                      "lost": len(receiver["missing"]), "duplicated": receiver["duplicates"],
                      "errors": {name: out[name]["errors"] for name in ("receiver", "away", "cut")},
                      "counts": {n: {k: v for k, v in r["recovery"].items() if k.startswith(("recover", "stale"))}
                                 for n, r in survivors.items()}}))
    assert out["acked"] == out["sent"] == MESSAGES + 20, out
    # back after the SIGKILL of the replica holding its session, after its own transport close, after a
    # graceful stop of its replica: the same sid, recovered every time, every message once, each with its offset
    assert [c["recovered"] for c in receiver["connects"]] == [False, True, True, True], receiver
    assert len({c["sid"] for c in receiver["connects"]}) == 1, receiver
    assert receiver["missing"] == [] and receiver["duplicates"] == 0, receiver
    assert receiver["got"] == MESSAGES + 20 and receiver["untagged"] == 0 and receiver["offsets_increase"], receiver
    # away longer than max_disconnection_duration: a new session, and the messages of its absence are gone
    assert [c["recovered"] for c in away["connects"]] == [False, False], away
    assert away["connects"][0]["sid"] != away["connects"][1]["sid"], away
    assert away["missing"] and away["duplicates"] == 0, away

    # its offset trimmed away while it was gone: a new session, not a replay with a hole
    # (it recovered before, after the kill, and after, from the graceful stop, if it was on those replicas)
    fresh = [i for i, c in enumerate(cut["connects"]) if i > 0 and not c["recovered"]]
    assert len(fresh) == 1 and cut["connects"][fresh[0]]["sid"] != cut["connects"][fresh[0] - 1]["sid"], cut
    assert all(c["recovered"] for c in cut["connects"][fresh[0] + 1:]), cut

    stats = [r["recovery"] for r in survivors.values()]
    # the cut client, and the sender if it had to come back after the trim: it never got an event, so its
    # session replays from where the stream was when it began, and that was trimmed
    sender_after_trim = sum(not c["recovered"] for c in out["sender"]["connects"][1:])
    assert sum(s["recovery_trimmed"] for s in stats) == 1 + sender_after_trim, survivors
    seen = sum(c["recovered"] for x in (receiver, away, cut, out["sender"]) for c in x["connects"])  # as the clients saw
    assert sum(s["recovered"] for s in stats) == seen, survivors
    assert sum(s["recovery_expired"] for s in stats) >= 1, survivors
    assert sum(s.get("replayed", 0) for s in stats) >= 1, (survivors, out)
    assert not any("Traceback" in text for text in logs.values()), logs


def test_the_lab_client_recovers_on_python_after_the_replica_holding_its_session_is_sigkilled(run_once):
    """The row where the Node adapter recovers nothing (recovery-kill-replica): here the killed replica's
    clients come back elsewhere with their session and what they missed replayed before the answer."""
    result = run_once("recovery-kill-replica-python")
    assert result.passed, result.verdict.reason
    values = result.values
    recovered = sum(r["recovery"]["recovered"] for r in result.replicas.values())
    assert values[scenario.Metric.RECOVERED_DROPS] == recovered == 2, result.replicas
    # the clients count what came before the answer, the replicas what they read back from the stream (the
    # reader may add a live event or two between the handover and the answer)
    replayed = sum(r["recovery"].get("replayed", 0) for r in result.replicas.values())
    assert values[scenario.Metric.REPLAYED] >= replayed >= 1, (values, result.replicas)
    assert values[scenario.Metric.MISSED_LOST] == 0 and values[scenario.Metric.REPLAY_DUPLICATES] == 0
