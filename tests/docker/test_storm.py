"""The reconnect-storm bench on real containers, tiny: a replica is SIGKILLed under 200 clients, every client
it held comes back through nginx to another replica, each reconnection subscribes its client's channel in
Redis (as the meter container reads it), and the bench writes its files and leaves nothing behind."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from labs.settings import ROOT


def test_a_tiny_storm_brings_every_client_back_and_writes_its_files(client, images, tmp_path, nothing_left):
    proc = subprocess.run([sys.executable, "-m", "labs.bench", "storm", "--connections", "200", "--settings",
                           "socketio", "--runs", "1"], cwd=ROOT, text=True, capture_output=True, timeout=180,
                          env={**os.environ, "WSLAB_RESULTS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    [out] = (tmp_path / "bench").glob("storm-*")
    assert {p.name for p in out.iterdir()} >= {"storm.json", "storm.csv", "storm-series.csv", "storm.png", "storm.md"}
    result = json.loads((out / "storm.json").read_text())
    [run] = result["results"]["socketio"]
    # app-1 held a third of the clients (round-robin); every one of them dropped and came back
    assert run["connected"] == 200 and 55 <= run["dropped"] <= 80
    assert run["never_back"] == 0 and run["back"] == run["dropped"] and run["back_100_s"] is not None
    # socket.io's first retry comes 0.5-1.5 s after the drop: nobody is back sooner
    assert run["back_50_s"] >= 0.5 and run["back_100_s"] >= run["back_95_s"] >= run["back_50_s"]
    assert run["accepted"] >= run["dropped"] and sum(run["replica_accepted"].values()) == run["accepted"]
    # each reconnection subscribed its client's own channel (but the 4 broadcast-room members', whose room the
    # other replicas had subscribed already): Redis counted at least that many SUBSCRIBEs
    assert run["subscribe"]["calls"] >= run["dropped"] - 4 and run["subscribe"]["peak_per_s"] > 0
    assert run["ticker"]["owed"] > 0 and run["ticker"]["lost"] == 0
    assert sum(r["members"] for r in run["replicas_at_end"].values()) == 200
    series = run["series"]
    assert series["app-1"][0] >= 55 and series["app-2"][-1] + series["app-3"][-1] + series["app-1"][-1] == 200
    [row] = list(csv.DictReader((out / "storm.csv").open()))
    assert row["setting"] == "socketio" and row["never_back"] == "0"
    assert (out / "storm.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "storm.md").read_text().startswith("# Reconnect storm: 200 clients, 3 replicas behind nginx")
