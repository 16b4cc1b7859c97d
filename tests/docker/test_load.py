"""Load steps on locust through the lab's own stack: every message accounted for, and no load process left."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil
import pytest

from labs import scenario
from labs.bench.capacity import capacity_scenario
from labs.infra import inspect
from labs.infra.launch import open_stack
from labs.load.step import LoadSpec, Session, run_step
from labs.spec import plan, stack_spec


def load_processes(out: Path) -> list[psutil.Process]:
    """Processes still running with this step's directory on their command line (locust and its workers)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if str(out) in " ".join(p.info.get("cmdline") or []):
            found.append(p)
    return found


def stack_for(client, images, s):
    spec, _ = stack_spec(client, plan(s), images)
    return open_stack(client, spec, scenario=s)


def test_a_pubsub_load_step_delivers_every_message_to_every_other_member(client, images, tmp_path):
    s = capacity_scenario("pubsub", 2, 6)
    with stack_for(client, images, s) as stack:
        out = tmp_path / "step"
        r = run_step(stack.port, LoadSpec(users=6, processes=2), 60, 2, out, broker=True,
                     cpu_probe=lambda: inspect.cpu_seconds(stack))
    c = r.counts
    assert c.joined == 6 and c.sent >= 110
    assert (c.owed, c.delivered, c.lost, c.duplicated, c.unexpected, c.dropped) == (c.sent * 5, c.sent * 5, 0, 0, 0, 0)
    assert r.locust["deliver"]["count"] == c.delivered  # the same deliveries in locust's own stats
    assert c.percentile_ms(50) is not None and c.percentile_ms(50) < c.max_ms + 1e-9
    assert {"app-1", "app-2", "redis", "nginx", "generator"} <= set(r.cpu)
    assert load_processes(out) == []


@pytest.mark.parametrize("implementation", ["python", "node"])
def test_the_node_driver_counts_every_delivery_through_the_front_network(implementation, client, images, tmp_path):
    """The Node load driver (users.mjs), connected to nginx's front-network address, against the lab's
    replica and against the article's server (which relays each frame to its sender too: not a delivery)."""
    from labs.bench.climb import nginx_address
    from labs.bench.replicas import replica_scenario

    with stack_for(client, images, replica_scenario(implementation, 6)) as stack:
        host, port = nginx_address(stack, "bridge")
        out = tmp_path / "step"
        r = run_step(port, LoadSpec(users=6, processes=2, driver="node", host=host), 120, 2, out, broker=True,
                     cpu_probe=lambda: inspect.cpu_seconds(stack))
    c = r.counts
    assert host != "127.0.0.1" and c.joined == 6 and c.sent == 240
    assert (c.owed, c.delivered, c.lost, c.duplicated, c.unexpected, c.dropped) == (c.sent * 5, c.sent * 5, 0, 0, 0, 0)
    assert c.latency_us.get_total_count() == c.delivered and 0 < c.percentile_ms(50) <= c.max_ms
    assert r.cpu["generator"] > 0 and load_processes(out) == []


def test_without_a_broker_only_the_senders_replica_delivers(client, images, tmp_path):
    s = capacity_scenario("none", 2, 6)
    with stack_for(client, images, s) as stack:
        r = run_step(stack.port, LoadSpec(users=6), 60, 2, tmp_path / "step", broker=False)
    c = r.counts
    # round-robin puts 3 users on each replica: each message is owed to the 2 others on its replica
    assert c.joined == 6
    assert (c.owed, c.delivered, c.lost, c.unexpected) == (c.sent * 2, c.sent * 2, 0, 0)


def test_socketio_users_through_the_redis_manager_lose_nothing(client, images, tmp_path):
    base = scenario.load("socketio-redis-manager")
    s = dataclasses.replace(base, workload=dataclasses.replace(base.workload, clients=4))
    with stack_for(client, images, s) as stack:
        r = run_step(stack.port, LoadSpec(users=4, user_class="SocketIOUser"), 20, 2, tmp_path / "step", broker=True)
    c = r.counts
    assert c.joined == 4 and c.sent >= 36
    assert (c.delivered, c.lost, c.duplicated) == (c.sent * 3, 0, 0)
    assert c.acked == c.sent


def test_one_session_steps_up_with_the_same_users_and_counts_each_step_apart(client, images, tmp_path):
    s = capacity_scenario("pubsub", 2, 4)
    with stack_for(client, images, s) as stack:
        with Session(stack.port, LoadSpec(users=4), tmp_path / "session", broker=True) as load:
            first, second = load.step(20, 1), load.step(80, 1)
    assert (first.counts.sent, second.counts.sent) == (20, 80)
    assert (first.counts.delivered, second.counts.delivered) == (60, 240)
    assert first.counts.lost == second.counts.lost == 0
    assert load.locust["deliver"]["count"] == 300
    assert load_processes(tmp_path / "session") == []


def test_ctrl_c_during_a_load_step_leaves_no_load_process_and_no_container(client, tmp_path):
    """As a terminal does: SIGINT to the bench's process group while locust's users are sending."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from labs.settings import LABEL

    bench = subprocess.Popen(
        [sys.executable, "-m", "labs.bench", "capacity", "--patterns", "pubsub", "--replicas", "2",
         "--rates", "50,100", "--runs", "1", "--seconds", "30"],
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        # the run id comes from the progress lines, which CI=true would silence
        env={**{k: v for k, v in os.environ.items() if k != "CI"}, "WSLAB_RESULTS": str(tmp_path)})
    deadline = time.monotonic() + 120
    locust = []
    while time.monotonic() < deadline and bench.poll() is None:
        kids = psutil.Process(bench.pid).children(recursive=True)
        locust = [k for k in kids if "locust" in " ".join(k.cmdline())]
        steps = list(tmp_path.glob("bench/capacity-*/steps/*/go-1.json"))
        if len(locust) >= 2 and steps:  # master and worker up, and the first step under way
            break
        time.sleep(0.05)
    assert locust, "locust never started"
    os.killpg(bench.pid, signal.SIGINT)
    out = bench.communicate(timeout=60)[0].decode()
    assert bench.returncode == 130, out[-2000:]
    assert not [p for p in locust if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    run_id = re.search(r"run ([0-9a-f]{8})", out).group(1)
    assert client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"}) == []
    assert client.networks.list(filters={"label": f"{LABEL}={run_id}"}) == []
