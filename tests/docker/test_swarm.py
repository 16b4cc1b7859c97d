"""The local Swarm on real engines: up and down leave nothing, a run spreads its services over the nodes,
and a run interrupted (Ctrl-C) or killed (SIGKILL, engines too) leaves nothing that `clean` does not remove.

Root only (network namespaces, extra dockerd processes); the host engine's own swarm state is checked
untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing

import docker
import pytest

from labs import scenario
from labs.infra.readiness import http_get
from labs.infra.swarm import nodes
from labs.live import state
from labs.runner import execute
from labs.settings import ROOT
from labs.spec import plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local Swarm needs root")


def host_swarm(client: docker.DockerClient) -> str:
    return str(client.info()["Swarm"]["LocalNodeState"])


def host_networks(client: docker.DockerClient) -> list[str]:
    """The host engine's own networks (not the lab's: other sessions make and remove theirs meanwhile)."""
    return sorted(n.name for n in client.networks.list() if "wslab.run" not in (n.attrs.get("Labels") or {}))


def lab(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "labs", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def wait_for_services(timeout: float = 240.0) -> None:
    """Until the recorded Swarm's manager runs some of the lab's services."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = nodes.load()
        if found is not None:
            try:
                with closing(nodes.node_client(found.manager, timeout=5)) as c:
                    if c.services.list(filters={"label": "wslab.run"}):
                        return
            except docker.errors.DockerException:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no service of the lab appeared on a local Swarm in {timeout:.0f}s")


@pytest.fixture
def no_swarm(client: docker.DockerClient) -> Iterator[None]:
    """No local Swarm of this owner before; none after (removed if the test left one); the host untouched."""
    assert nodes.leftovers() == [], "a local Swarm of this owner exists: `python -m labs swarm down`"
    before = host_swarm(client), host_networks(client)
    yield
    left = nodes.leftovers()
    nodes.down()
    assert left == [], f"left behind: {left}"
    assert (host_swarm(client), host_networks(client)) == before


def test_swarm_up_forms_one_swarm_and_down_leaves_nothing(no_swarm: None) -> None:
    built = nodes.up([], host_client=docker.from_env(), nodes=2)
    try:
        assert nodes.load() == built
        with closing(nodes.node_client(built.manager)) as manager:
            states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in manager.nodes.list()}
        assert states == {"node-1": "ready", "node-2": "ready"}
        assert any(ns == nodes.node_ns(built.owner, 2) for ns in nodes.netns())
    finally:
        found = nodes.down()
    assert f"pid {built.nodes[0].pid}" in found and nodes.leftovers() == []


def test_ctrl_c_during_a_run_removes_the_swarm_it_built(no_swarm: None) -> None:
    proc = lab("run", "--swarm-up", "2", "swarm-pubsub-one-node")
    try:
        wait_for_services()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=90)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:]
    assert nodes.leftovers() == []


def test_clean_removes_what_a_sigkilled_run_and_killed_engines_left(no_swarm: None) -> None:
    proc = lab("run", "--swarm-up", "2", "swarm-pubsub-one-node")
    try:
        wait_for_services()
    finally:
        proc.kill()
        proc.wait()
    recorded = nodes.load()
    assert recorded is not None
    for node in recorded.nodes:  # the engines die too: what is left are shims, containers, mounts, namespaces
        os.kill(node.pid, signal.SIGKILL)
    assert nodes.leftovers()
    done = subprocess.run([sys.executable, "-m", "labs", "clean"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "removed the local Swarm" in done.stdout
    assert nodes.leftovers() == []


def test_ctrl_c_while_swarm_up_loads_images_removes_what_it_built(no_swarm: None) -> None:
    proc = lab("swarm", "up", "--nodes", "2")
    try:
        tar = nodes.swarm_dir(nodes.OWNER) / "images.tar"
        deadline = time.monotonic() + 120
        while not tar.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tar.exists(), "swarm up never began saving the images"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:]
    assert time.monotonic() - started < 30
    assert nodes.leftovers() == []


@pytest.fixture(scope="module")
def local_swarm(images) -> Iterator[nodes.Swarm]:  # type: ignore[no-untyped-def]
    assert nodes.leftovers() == [], "a local Swarm of this owner exists: `python -m labs swarm down`"
    try:
        yield nodes.up(sorted({images.app.tag, images.redis.tag, images.nginx.tag}),
                         host_client=docker.from_env(), nodes=3)
    finally:
        nodes.down()
    assert nodes.leftovers() == []


def test_swarm_pubsub_spreads_the_replicas_over_three_nodes_and_removes_its_services(
        client: docker.DockerClient, images, local_swarm: nodes.Swarm, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    result = execute(client, plan(scenario.load("swarm-pubsub")), images)
    assert result.passed, result.verdict_text
    assert [result.nodes[f"app-{i}"] for i in (1, 2, 3)] == ["node-1", "node-2", "node-3"]
    assert result.nodes["redis"] == result.nodes["nginx"] == "node-1"
    with closing(nodes.node_client(local_swarm.manager)) as manager:
        assert manager.services.list() == [] and manager.configs.list() == []
        assert not [n.name for n in manager.networks.list() if n.name.startswith("wslab-")]


def test_a_killed_node_comes_back_and_streams_lose_nothing(
        client: docker.DockerClient, images, local_swarm: nodes.Swarm, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    result = execute(client, plan(scenario.load("swarm-node-loss-streams")), images)
    assert result.passed, result.verdict_text
    said = [what for _, what in result.swarm_events]
    assert "node-3: down/active" in said and said.index("node-3: down/active") < len(said) - 1
    assert result.states["app-3"] == "running"



def test_a_start_first_rolling_restart_runs_the_new_task_then_stops_the_old_one_within_its_step(
        client: docker.DockerClient, images, local_swarm: nodes.Swarm, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    """app-2's service updated start-first: Swarm runs a new task, stops the old one (SIGTERM: its clients get
    1001), nginx reaches the new one, and Streams lose nothing; the step covers both tasks' changes."""
    text = (ROOT / "scenarios" / "swarm-deploy-streams-start-first.toml").read_text()
    text = text.replace("messages = 300", "messages = 80").replace("# no target", '\ntarget = "app-2"  #')
    result = execute(client, plan(scenario.parse(text, name="swarm-deploy-one")), images)
    assert result.passed, result.verdict_text
    (step,) = [f for f in result.history.faults if f.kind == "rolling-restart"]
    cut = [s for s in result.history.sessions if s.replica == "app-2" and s.code == 1001]
    assert step.target == "app-2" and cut and all(step.applied <= s.closed <= step.healed for s in cut)  # type: ignore[operator]
    said = [what for _, what in result.swarm_events]
    after = said[said.index("fault rolling-restart app-2 applied"):]
    new = [w for w in after if w.startswith("app-2 task ") and w.endswith(": running on node-2")]
    old = [w for w in after if w.startswith("app-2 task ") and w.endswith(": shutdown on node-2")]
    assert len(new) == 1 and len(old) == 1 and after.index(new[0]) < after.index(old[0]), after
    assert result.states["app-2"] == "running"


def test_a_swarm_given_by_its_manager_runs_through_each_nodes_engine_url(
        client: docker.DockerClient, images, local_swarm: nodes.Swarm, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    """`swarm use`'s path, on the local Swarm seen as a real one: nodes from the manager, engines by URL."""
    base = nodes.swarm_dir(local_swarm.owner)
    real = nodes.attach(local_swarm.manager.url, f"unix://{base}/{{hostname}}/docker.sock")
    assert real.remote and [n.hostname for n in real.nodes] == ["node-1", "node-2", "node-3"]
    assert [(n.url, n.address) for n in real.nodes] == [(n.url, n.address) for n in local_swarm.nodes]
    result = execute(client, plan(scenario.load("swarm-pubsub")), images, on=real)
    assert result.passed, result.verdict_text
    assert sorted(set(result.nodes.values())) == ["node-1", "node-2", "node-3"]
    with pytest.raises(nodes.SwarmError, match="kill-node needs the local Swarm"):
        execute(client, plan(scenario.load("swarm-node-loss-streams")), images, on=real)


def test_up_on_a_swarm_scenario_runs_its_stack_on_the_swarm_and_sigterm_removes_it(
        local_swarm: nodes.Swarm) -> None:
    """`labs up swarm-pubsub`: nginx answers at node-1's address, the replicas are Swarm services on the
    three nodes, and SIGTERM removes them (exit 130)."""
    name = f"swarm-{int(time.time() * 1000) % 10**9}"
    proc = lab("up", "swarm-pubsub", "--name", name)
    try:
        deadline = time.monotonic() + 240
        live = state.read(name)
        while live is None or not live.ready:
            assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline, "`up` not ready after 240s"
            time.sleep(0.1)
            live = state.read(name)
        assert live.host == local_swarm.manager.address
        assert http_get(live.port, "/_lab/app-3/healthz", host=live.host)[0] == 200
        with closing(nodes.node_client(local_swarm.manager)) as manager:
            services = manager.services.list(filters={"label": f"wslab.run={live.run_id}"})
            placed = {s.attrs["Spec"]["Labels"]["wslab.role"]: s.tasks()[0]["NodeID"] for s in services}
            assert len({placed["app-1"], placed["app-2"], placed["app-3"]}) == 3
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=90)[0].decode()
        assert proc.returncode == 130, out[-2000:]
        with closing(nodes.node_client(local_swarm.manager)) as manager:
            assert manager.services.list(filters={"label": f"wslab.run={live.run_id}"}) == []
        assert state.read(name) is None
    finally:
        proc.kill()
        state.forget(name)
