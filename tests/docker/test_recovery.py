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

from labs.brokers import STREAMS_ARGS
from labs.infra.render import for_replicas, render_nginx
from labs.infra.stack import Stack, StackSpec
from labs.scenario import Balance

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
#: max_disconnection_duration of the replicas, and how long the "away" client stays away (past it and the
#: one-second renewal of a connected session's time to live)
MAX_DISCONNECTION_S = 4
AWAY_MS = (MAX_DISCONNECTION_S + 2) * 1000
#: messages sent, one every 20 ms: the receiver's two drops and the cut client's fall inside the 8 s of sending
MESSAGES = 400


def health(stack: Stack, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/_lab/{name}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def run_client(stack: Stack) -> tuple[dict[str, Any], str]:
    """Run recovery_socketio.mjs; SIGKILL the replica it names, or trim the stream before the id it names,
    when it asks. Returns its report and the replica killed."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("needs Node 20 and `make node-deps` (npm ci in tests/node)")
    proc = subprocess.Popen(["node", str(NODE_DIR / "recovery_socketio.mjs"), "--port", str(stack.port),
                             "--away-ms", str(AWAY_MS), "--messages", str(MESSAGES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed, report = "", None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "kill" in msg:
                killed = msg["kill"]
                container = stack.containers[killed]
                container.kill()
                container.wait(condition="not-running")
            elif "trim" in msg:
                code, said = stack.containers["redis"].exec_run(["redis-cli", "XTRIM", msg["trim"], "MINID",
                                                                 msg["minid"]])
                assert code == 0 and int(said) > 0, said
            if "kill" in msg or "trim" in msg:
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
    return report, killed


def test_the_official_client_recovers_after_its_replica_is_sigkilled(client, images, nothing_left):
    spec = StackSpec(run_id=f"rec{uuid.uuid4().hex[:5]}", replicas=3, broker="redis-streams", images=images,
                     app_module="wslab_app.sio", redis_args=STREAMS_ARGS,
                     app_args=("--max-disconnection-duration", str(MAX_DISCONNECTION_S), "--maxlen", "10000"),
                     balancer_conf=render_nginx(for_replicas(3, balance=Balance.ROUND_ROBIN)))
    with Stack(client, spec) as stack:
        out, killed = run_client(stack)
        survivors = {n: health(stack, n) for n in ("app-1", "app-2", "app-3") if n != killed}
        logs = {n: c.logs().decode(errors="replace") for n, c in stack.containers.items() if n.startswith("app-")}

    receiver, away, cut = out["receiver"], out["away"], out["cut"]
    print(json.dumps({"killed": killed, **{name: [(c["recovered"], c["away_ms"]) for c in out[name]["connects"]]
                                         for name in ("receiver", "away", "cut")},
                      "replayed": {n: r["recovery"].get("replayed", 0) for n, r in survivors.items()},
                      "lost": len(receiver["missing"]), "duplicated": receiver["duplicates"],
                      "errors": {name: out[name]["errors"] for name in ("receiver", "away", "cut")},
                      "counts": {n: {k: v for k, v in r["recovery"].items() if k.startswith(("recover", "stale"))}
                                 for n, r in survivors.items()}}))
    assert out["acked"] == out["sent"] == MESSAGES, out
    # back after the SIGKILL of the replica holding its session, then after its own transport close: the same
    # sid, recovered both times, every message once, each with its offset
    assert [c["recovered"] for c in receiver["connects"]] == [False, True, True], receiver
    assert len({c["sid"] for c in receiver["connects"]}) == 1, receiver
    assert receiver["missing"] == [] and receiver["duplicates"] == 0, receiver
    assert receiver["got"] == MESSAGES and receiver["untagged"] == 0 and receiver["offsets_increase"], receiver
    # away longer than max_disconnection_duration: a new session, and the messages of its absence are gone
    assert [c["recovered"] for c in away["connects"]] == [False, False], away
    assert away["connects"][0]["sid"] != away["connects"][1]["sid"], away
    assert away["missing"] and away["duplicates"] == 0, away

    # its offset trimmed away while it was gone: a new session, not a replay with a hole
    # (it recovered once already if it shared the receiver's replica)
    assert cut["connects"][-1]["recovered"] is False and len(cut["connects"]) in (2, 3), cut
    assert cut["connects"][-1]["sid"] != cut["connects"][-2]["sid"], cut

    stats = [r["recovery"] for r in survivors.values()]
    assert sum(s["recovery_trimmed"] for s in stats) == 1, survivors
    seen = sum(c["recovered"] for x in (receiver, away, cut) for c in x["connects"])  # the clients' count
    assert sum(s["recovered"] for s in stats) == seen, survivors
    assert sum(s["recovery_expired"] for s in stats) >= 1, survivors
    assert sum(s.get("replayed", 0) for s in stats) >= 1, (survivors, out)
    assert not any("Traceback" in text for text in logs.values()), logs
