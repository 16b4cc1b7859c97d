"""The Swarm engine's pure parts: scenario [swarm] tables and node faults, placement, the local Swarm's
names and each node's dockerd command."""

import pytest

from labs import scenario
from labs.errors import ScenarioError, SwarmError
from labs.infra.swarm import nodes
from labs.infra.swarm.stack import place
from labs.scenario import FaultKind, Swarm

BASE = """
description = "d"
{swarm}
[topology]
replicas = 3
broker = "redis-streams"
[workload]
clients = 4
messages = 100
rate = 20
reconnect = true
{faults}
[expect]
lost = 0
"""

KILL_NODE_3 = """
[[faults]]
kind = "kill-node"
target = "node-3"
at = 1.0
heal_after = 2.0
"""


def parse(swarm: str = "[swarm]\nnodes = 3", faults: str = ""):
    return scenario.parse(BASE.format(swarm=swarm, faults=faults), name="t")


def test_a_swarm_table_selects_the_swarm_with_its_pins():
    s = parse('[swarm]\nnodes = 2\nbroker_node = "node-2"')
    assert s.swarm == Swarm(nodes=2, broker_node="node-2", nginx_node="node-1")
    assert parse(swarm="").swarm is None


def test_a_node_fault_parses_on_a_swarm():
    (fault,) = parse(faults=KILL_NODE_3).faults
    assert fault.kind is FaultKind.KILL_NODE and fault.target == "node-3" and fault.heal_after == 2.0


@pytest.mark.parametrize("swarm, faults, message", [
    ("", KILL_NODE_3, "kill-node needs a [swarm] table"),
    ("[swarm]\nnodes = 2", KILL_NODE_3, "kill-node needs target node-1..node-2, got 'node-3'"),
    ("[swarm]\nnodes = 3", KILL_NODE_3.replace("node-3", "app-1"), "needs target node-1..node-3, got 'app-1'"),
    ("[swarm]\nnodes = 3", KILL_NODE_3.replace("node-3", "node-1"), "node-1, the Swarm's only manager"),
    ("[swarm]\nnodes = 10", "", "nodes must be between 1 and 9, got 10"),
    ('[swarm]\nnodes = 2\nnginx_node = "node-3"', "", "nginx_node = 'node-3' but the swarm has node-1..node-2"),
    ('[swarm]\nbroker_node = "redis"', "", "broker_node"),
    ("[swarm]\nzones = 2", "", "zones"),
    ('swarm = "yes"', "", "swarm must be a table"),
])
def test_a_bad_swarm_table_or_node_fault_is_refused_in_one_line(swarm, faults, message):
    with pytest.raises(ScenarioError) as info:
        parse(swarm, faults)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_engine_swarm_keeps_a_scenarios_own_table_and_gives_others_the_defaults():
    own = parse('[swarm]\nnodes = 2')
    assert scenario.on_swarm(own) is own
    plain = parse(swarm="")
    assert scenario.on_swarm(plain).swarm == Swarm() and plain.swarm is None


def test_replicas_round_the_nodes_and_pins_hold():
    names = ["redis", "app-1", "app-2", "app-3", "app-4", "nginx"]
    placed = place(names, ["node-1", "node-2", "node-3"], pinned={"redis": "node-2", "nginx": "node-1"})
    assert placed == {"app-1": "node-1", "app-2": "node-2", "app-3": "node-3", "app-4": "node-1",
                      "redis": "node-2", "nginx": "node-1"}


def test_on_one_node_everything_is_there():
    placed = place(["app-1", "app-2", "nginx"], ["node-1"], pinned={"nginx": "node-1"})
    assert set(placed.values()) == {"node-1"}


def test_owners_get_their_own_names_and_segments():
    assert nodes.node_ns("a", 2) == "wslab-a-node-2" and nodes.segment_ns("a") == "wslab-a-seg"
    assert nodes.subnet_octet("alice") != nodes.subnet_octet("bob")
    assert 20 <= nodes.subnet_octet("alice") < 220
    assert len(nodes.host_link("a-very-long-owner-name-of-32-ch")) <= 15


def test_each_engine_has_its_own_roots_socket_and_no_iptables():
    command = nodes.dockerd_command("o", 2, "10.251.7.2")
    assert command[:2] == ["nsenter", "--net=/run/netns/wslab-o-node-2"]
    assert command[2:4] == ["unshare", "--uts"]
    shell = command[-1]
    assert shell.startswith("hostname node-2 && exec dockerd ")
    for flag in ("--host unix:///run/wslab-swarm/o/node-2/docker.sock", "--data-root /run/wslab-swarm/o/node-2/data",
                 "--exec-root /run/wslab-swarm/o/node-2/exec", "--bridge none", "--iptables=false",
                 "--config-file /run/wslab-swarm/o/node-2/daemon.json", "--cgroup-parent /wslab-o-node-2",
                 "--swarm-default-advertise-addr 10.251.7.2", "--no-new-privileges"):
        assert flag in shell


@pytest.mark.parametrize("count, heartbeat, message", [
    (0, 2.0, "--nodes 0 must be 1..9"), (10, 2.0, "--nodes 10 must be 1..9"),
    (3, 0.1, "--heartbeat 0.1 must be 0.5..30 seconds"),
])
def test_a_swarm_that_cannot_be_built_is_refused_first(count, heartbeat, message):
    with pytest.raises(SwarmError, match=message.replace(".", r"\.")):
        nodes.validate_nodes(count, heartbeat)


def test_faults_a_swarm_cannot_take_are_refused_with_engine_swarm_and_in_swarm_tables():
    restart = KILL_NODE_3.replace("kill-node", "restart-redis").replace("node-3", "redis")
    with pytest.raises(ScenarioError, match="restart-redis does not run on a Swarm"):
        parse(faults=restart)
    plain = parse(swarm="", faults=restart)
    with pytest.raises(ScenarioError, match="restart-redis does not run on a Swarm"):
        scenario.on_swarm(plain)


def test_a_node_is_reached_at_its_socket_or_its_engine_url():
    local = nodes.Node("node-2", "10.251.7.2", "/run/wslab-swarm/o/node-2/docker.sock")
    real = nodes.Node("node-2", "192.0.2.7", "ssh://root@192.0.2.7", hostname="worker-a")
    assert local.url == "unix:///run/wslab-swarm/o/node-2/docker.sock" and local.swarm_name == "node-2"
    assert real.url == "ssh://root@192.0.2.7" and real.swarm_name == "worker-a"


def test_a_redis_cluster_broker_is_refused_on_a_swarm():
    with pytest.raises(ScenarioError, match="runs on one engine only"):
        scenario.on_swarm(scenario.load("cluster-pubsub"))
