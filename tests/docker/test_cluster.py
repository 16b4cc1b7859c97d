"""Redis Cluster brokers on real containers: the lab forms the cluster, both brokers deliver every message
across replicas, sharded Pub/Sub keeps messages off the cluster bus, a killed master's rooms come back on
the promoted node, and every cluster container and network is gone afterwards."""

from __future__ import annotations

import uuid

import pytest

from labs.accounting.cluster import bus_bytes
from labs.errors import StackError
from labs.infra import redis_cluster
from labs.infra.render import for_replicas, render_nginx
from labs.infra.stack import Stack, StackSpec
from labs.settings import LABEL

from .conftest import lab_resources


def test_both_cluster_brokers_deliver_everything_and_only_classic_publish_crosses_the_bus(run_once, nothing_left):
    results = {name: run_once(name) for name in ("cluster-pubsub", "cluster-sharded")}
    for name, result in results.items():
        a = result.accounting
        assert result.passed, f"{name}: {result.verdict.reason}"
        assert a.cross_delivered == a.cross_expected > 0 and a.lost == 0 and a.duplicated == 0
        nodes = result.history.probes["cluster"]["nodes"]
        assert sorted(nodes) == ["redis-1", "redis-2", "redis-3"]
        assert {n["role"] for n in nodes.values()} == {"master"}
        assert set(result.states.values()) == {"running"}
    per_message = {name: (bus_bytes(r.history) or 0) / r.accounting.sent for name, r in results.items()}
    # classic PUBLISH: every message goes to the two other masters with a ~2 KB bus header each
    assert per_message["cluster-pubsub"] > 4000
    assert per_message["cluster-sharded"] < per_message["cluster-pubsub"] / 2
    sent = results["cluster-pubsub"].history.probes["cluster"]["nodes"]
    assert sum(n["bus_messages_sent"].get("publish", 0) for n in sent.values()) >= 2 * results[
        "cluster-pubsub"].accounting.sent


def test_a_killed_master_is_replaced_and_the_replicas_resubscribe_on_the_promoted_node(run_once, nothing_left):
    result = run_once("cluster-sharded-kill-master")
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert [f.kind for f in result.history.faults] == ["kill-cluster-master"]
    assert a.lost_outside_fault == 0
    roles = {name: n["role"] for name, n in result.history.probes["cluster"]["nodes"].items()}
    # redis-1 came back as a replica; its replica redis-4 is a master now
    assert roles["redis-1"] == "slave" and roles["redis-4"] == "master", roles
    broken = [e for e in result.history.broker_events if e.part == "subscriber" and not e.working]
    assert broken, "no replica noticed that it lost redis-1"
    assert set(result.states.values()) == {"running"}


def test_a_cluster_that_fails_to_form_is_torn_down(client, images, nothing_left):
    def fail(stack: Stack) -> None:
        assert {f"redis-{i}" for i in (1, 2, 3)} <= set(stack.containers)
        raise StackError("forming failed on purpose")

    run_id = f"cf{uuid.uuid4().hex[:6]}"
    spec = StackSpec(run_id=run_id, replicas=1, broker="redis-cluster-sharded",
                     balancer_conf=render_nginx(for_replicas(1)), images=images,
                     backends=redis_cluster.cluster_backends(images.redis.tag, 3, 0), broker_url=redis_cluster.broker_url(3),
                     form=fail, ready_timeout=20.0)
    with pytest.raises(StackError, match="forming failed on purpose"):
        with Stack(client, spec):
            pass
    assert lab_resources(client) == ([], [])
    assert not client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})
