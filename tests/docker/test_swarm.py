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
from contextlib import closing
from typing import Iterator

import docker
import pytest

from labs import scenario
from labs.infra.swarm import nodes as cluster
from labs.runner import execute
from labs.settings import ROOT
from labs.spec import plan

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(os.geteuid() != 0, reason="the local Swarm needs root")]


def host_swarm(client: docker.DockerClient) -> str:
    return str(client.info()["Swarm"]["LocalNodeState"])


def host_networks(client: docker.DockerClient) -> list[str]:
    """The host engine's own networks (not the lab's: other sessions make and remove theirs meanwhile)."""
    return sorted(n.name for n in client.networks.list() if "wslab.run" not in (n.attrs.get("Labels") or {}))


def lab(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "labs", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def wait_for_services(timeout: float = 240.0) -> None:
    """Until the recorded cluster's manager runs some of the lab's services."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cluster.load()
        if found is not None:
            try:
                with closing(cluster.node_client(found.manager, timeout=5)) as c:
                    if c.services.list(filters={"label": "wslab.run"}):
                        return
            except docker.errors.DockerException:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no service of the lab appeared on a local Swarm in {timeout:.0f}s")


@pytest.fixture
def no_cluster(client: docker.DockerClient) -> Iterator[None]:
    """No local Swarm of this owner before; none after (removed if the test left one); the host untouched."""
    assert cluster.leftovers() == [], "a local Swarm of this owner exists: `python -m labs cluster down`"
    before = host_swarm(client), host_networks(client)
    yield
    left = cluster.leftovers()
    cluster.down()
    assert left == [], f"left behind: {left}"
    assert (host_swarm(client), host_networks(client)) == before


def test_cluster_up_forms_one_swarm_and_down_leaves_nothing(no_cluster: None) -> None:
    built = cluster.up([], host_client=docker.from_env(), nodes=2)
    try:
        assert cluster.load() == built
        with closing(cluster.node_client(built.manager)) as manager:
            nodes = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in manager.nodes.list()}
        assert nodes == {"node-1": "ready", "node-2": "ready"}
        assert any(ns == cluster.node_ns(built.owner, 2) for ns in cluster.netns())
    finally:
        found = cluster.down()
    assert f"pid {built.nodes[0].pid}" in found and cluster.leftovers() == []


def test_ctrl_c_during_a_run_removes_the_cluster_it_built(no_cluster: None) -> None:
    proc = lab("run", "--cluster-up", "2", "swarm-pubsub-one-node")
    try:
        wait_for_services()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=90)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:]
    assert cluster.leftovers() == []


def test_clean_removes_what_a_sigkilled_run_and_killed_engines_left(no_cluster: None) -> None:
    proc = lab("run", "--cluster-up", "2", "swarm-pubsub-one-node")
    try:
        wait_for_services()
    finally:
        proc.kill()
        proc.wait()
    recorded = cluster.load()
    assert recorded is not None
    for node in recorded.nodes:  # the engines die too: what is left are shims, containers, mounts, namespaces
        os.kill(node.pid, signal.SIGKILL)
    assert cluster.leftovers()
    done = subprocess.run([sys.executable, "-m", "labs", "clean"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "removed the local Swarm" in done.stdout
    assert cluster.leftovers() == []


def test_ctrl_c_while_cluster_up_loads_images_removes_what_it_built(no_cluster: None) -> None:
    proc = lab("cluster", "up", "--nodes", "2")
    try:
        tar = cluster.cluster_dir(cluster.OWNER) / "images.tar"
        deadline = time.monotonic() + 120
        while not tar.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tar.exists(), "cluster up never began saving the images"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:]
    assert time.monotonic() - started < 30
    assert cluster.leftovers() == []


@pytest.fixture(scope="module")
def local_swarm(images) -> Iterator[cluster.Cluster]:  # type: ignore[no-untyped-def]
    assert cluster.leftovers() == [], "a local Swarm of this owner exists: `python -m labs cluster down`"
    try:
        yield cluster.up(sorted({images.app.tag, images.redis.tag, images.nginx.tag}),
                         host_client=docker.from_env(), nodes=3)
    finally:
        cluster.down()
    assert cluster.leftovers() == []


def test_swarm_pubsub_spreads_the_replicas_over_three_nodes_and_removes_its_services(
        client: docker.DockerClient, images, local_swarm: cluster.Cluster, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    result = execute(client, plan(scenario.load("swarm-pubsub")), images)
    assert result.passed, result.verdict_text
    assert [result.nodes[f"app-{i}"] for i in (1, 2, 3)] == ["node-1", "node-2", "node-3"]
    assert result.nodes["redis"] == result.nodes["nginx"] == "node-1"
    with closing(cluster.node_client(local_swarm.manager)) as manager:
        assert manager.services.list() == [] and manager.configs.list() == []
        assert not [n.name for n in manager.networks.list() if n.name.startswith("wslab-")]


def test_a_killed_node_comes_back_and_streams_lose_nothing(
        client: docker.DockerClient, images, local_swarm: cluster.Cluster, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    result = execute(client, plan(scenario.load("swarm-node-loss-streams")), images)
    assert result.passed, result.verdict_text
    said = [what for _, what in result.swarm_events]
    assert "node-3: down/active" in said and said.index("node-3: down/active") < len(said) - 1
    assert result.states["app-3"] == "running"



def test_a_swarm_given_by_its_manager_runs_through_each_nodes_engine_url(
        client: docker.DockerClient, images, local_swarm: cluster.Cluster, nothing_left: None) -> None:  # type: ignore[no-untyped-def]
    """`cluster use`'s path, on the local Swarm seen as a real one: nodes from the manager, engines by URL."""
    base = cluster.cluster_dir(local_swarm.owner)
    real = cluster.attach(local_swarm.manager.url, f"unix://{base}/{{hostname}}/docker.sock")
    assert real.remote and [n.hostname for n in real.nodes] == ["node-1", "node-2", "node-3"]
    assert [(n.url, n.address) for n in real.nodes] == [(n.url, n.address) for n in local_swarm.nodes]
    result = execute(client, plan(scenario.load("swarm-pubsub")), images, on=real)
    assert result.passed, result.verdict_text
    assert sorted(set(result.nodes.values())) == ["node-1", "node-2", "node-3"]
    with pytest.raises(cluster.ClusterError, match="kill-node needs the local cluster"):
        execute(client, plan(scenario.load("swarm-node-loss-streams")), images, on=real)
