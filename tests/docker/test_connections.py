"""The connection-scale bench on real containers, small: it holds its connections, every broadcast reaches
every other connection, and whether it finishes or is interrupted, nothing of its run is left: no
container, no network, no load process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from labs.infra.engine import userland_proxy
from labs.settings import LABEL, ROOT


def start(results: Path, *args: str, bench: str = "connections") -> subprocess.Popen[str]:
    """The bench as a terminal starts it: its own process group, SIGINT at its default."""
    return subprocess.Popen([sys.executable, "-m", "labs.bench", bench, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # progress lines are what this test reads: CI=true would silence them
                            env={**{k: v for k, v in os.environ.items() if k != "CI"},
                                 "WSLAB_RESULTS": str(results)}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def left_of(client: docker.DockerClient, run_id: str) -> list[str]:
    selector = {"label": f"{LABEL}={run_id}"}
    return ([c.name for c in client.containers.list(all=True, filters=selector)]
            + [n.name for n in client.networks.list(filters=selector)])


def test_a_small_run_holds_every_connection_loses_nothing_and_leaves_nothing(client, images, tmp_path):
    proc = start(tmp_path, "--connections", "600", "--broadcasts", "2", "--hold", "1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    run_id = re.search(r"run ([0-9a-f]{8}): 600 connections", err).group(1)
    [result_dir] = (tmp_path / "bench").glob("connections-*")
    result = json.loads((result_dir / "connections.json").read_text())
    assert (result_dir / "connections.md").read_text().startswith("# 600 WebSocket connections")
    run = result["results"][0]
    assert run["connected"] == 600 and run["lost"] == 0 and run["duplicated"] == 0
    assert [b["received"] for b in run["broadcasts"]] == [599, 599]
    assert sum(r["members"] for r in run["replicas"].values()) == 600
    assert all(r["bytes_per_connection"] and r["bytes_per_connection"] > 1000 for r in run["replicas"].values())
    # one docker-proxy per published port, unless the engine carries them by netfilter (as the lab starts it)
    assert len(run["held"]["proxies"]) == (result["layout"]["ports"] if userland_proxy() else 0)
    assert len(run["held"]["nginx"]) == result["layout"]["nginx_workers"]
    assert not [p for p in (load["pid"] for load in run["held"]["load"]) if alive(p)]
    # paced from 100/s (--rate auto): every window the load processes reported, none lost anything
    assert run["ramp"]["windows"] and sum(w["opened"] for w in run["ramp"]["windows"]) == 600
    assert run["open_after_hold"] == 600 and run["ramp"]["untried"] == 0
    assert left_of(client, run_id) == []


def test_ctrl_c_while_connecting_removes_the_load_processes_and_the_stack(client, images, tmp_path):
    proc = start(tmp_path, "--connections", "20000", "--broadcasts", "1")
    loads: list[int] = []
    run_id = ""
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines, until the load processes are opening connections
            run_id = (re.search(r"run ([0-9a-f]{8}):", line) or [run_id, run_id])[1]
            if "opening 20000 connections" in line:
                break
            assert time.monotonic() < deadline, "the bench never started its load processes"
        while len(loads) < 2 and time.monotonic() < deadline:
            loads = [p for p in children(proc.pid) if b"labs.bench.connections.client" in _cmdline(p)]
        assert len(loads) == 2
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert not [p for p in loads if alive(p)]
    assert run_id and left_of(client, run_id) == []


def test_partitioning_setups_hold_every_connection_and_say_what_each_node_did(client, images, tmp_path,
                                                                             nothing_left):
    """Small: 600 connections in 20 rooms over 3 replicas, on one Redis (round-robin), a sharded Redis
    Cluster partitioned by room, and no broker partitioned by room."""
    proc = subprocess.Popen([sys.executable, "-m", "labs.bench", "partitioning", "--connections", "600",
                             "--rooms", "20", "--replicas", "3", "--runs", "1", "--broadcasts", "2",
                             "--setups", "redis-pubsub:round-robin,redis-cluster-sharded:room,none:room"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "WSLAB_RESULTS": str(tmp_path)})
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    [result_dir] = (tmp_path / "bench").glob("partitioning-*")
    result = json.loads((result_dir / "partitioning.json").read_text())
    rows = {f"{r['broker']}:{r['balance']}": r for r in result["rows"]}
    for r in rows.values():  # each round: one message into each of the 20 rooms, 29 other members each
        assert r["connected"] == 600 and r["lost"] == 0 and r["duplicated"] == 0 and r["acked"] == 40
    runs = result["results"]
    one_redis = runs["redis-pubsub:round-robin"][0]
    # round-robin: every replica has members of every room; by room: each room on one replica
    assert all(v["rooms"] == 20 for v in one_redis["replicas"].values())
    sharded = runs["redis-cluster-sharded:room"][0]
    assert sum(v["rooms"] for v in sharded["replicas"].values()) == 20
    assert sum(v["members"] for v in sharded["replicas"].values()) == 600
    # the rooms' publishes spread over the three masters; one Redis took them all
    assert set(sharded["nodes"]) == {"redis-1", "redis-2", "redis-3"}
    assert all(n["publishes"] > 0 for n in sharded["nodes"].values())
    assert one_redis["nodes"]["redis"]["publishes"] >= 40
    assert runs["none:room"][0]["nodes"] == {}
    assert (result_dir / "partitioning.md").read_text().startswith("# 600 connections in 20 rooms over 3 replicas")


def test_the_default_stack_holds_what_it_is_sized_for_and_a_small_nginx_shows_refusals(client, images, tmp_path):
    """The stack `up` starts (3 nginx workers, 20,000 files a process here) holds 600 connections through
    nginx's own address with nothing refused; the same bench against one nginx worker of 64 connections
    counts what that nginx refused and exits 1."""
    proc = start(tmp_path / "sized", "--connections", "600", bench="defaults")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    [result_dir] = (tmp_path / "sized" / "bench").glob("defaults-*")
    result = json.loads((result_dir / "defaults.json").read_text())
    assert result["refused"]["per_run"] == [0] and result["summary"]["lost"] == 0
    assert result["results"][0]["connected"] == 600 and result["way_in"]["via"] == "bridge"
    assert len(result["results"][0]["held"]["nginx"]) == result["sizing"]["nginx_workers"] >= 2

    proc = start(tmp_path / "small", "--connections", "600", "--workers", "1", "--worker-connections", "64",
                 bench="defaults")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]
    [result_dir] = (tmp_path / "small" / "bench").glob("defaults-*")
    result = json.loads((result_dir / "defaults.json").read_text())
    # 64 connections, two per client WebSocket and a few for nginx itself: ~30 held, the rest refused
    assert 0 < result["results"][0]["connected"] < 64 and result["refused"]["per_run"][0] > 500
    assert result["refused"]["nginx_errors"].get("worker_connections are not enough", 0) > 0
