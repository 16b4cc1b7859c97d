"""The seed article's own Node servers on real containers: every seed-node scenario holds its declared
outcome, and the Node replicas leave cleanly."""

from __future__ import annotations

import pytest

from labs import scenario
from labs.infra.launch import open_stack
from labs.infra.render import for_replicas, render_nginx
from labs.infra.stack import StackSpec
from labs.protocols import for_app
from labs.scenario import AppKind
from labs.settings import LABEL
from labs.spec import new_run_id

SEED_NODE = [name for name in scenario.available() if name.startswith("seed-node-")]


def left_by(client, run_id: str) -> list[str]:
    """What one run left behind (other runs may share the engine: only this run's label counts)."""
    selector = {"label": f"{LABEL}={run_id}"}
    return ([c.name for c in client.containers.list(all=True, filters=selector)]
            + [n.name for n in client.networks.list(filters=selector)])


@pytest.mark.parametrize("name", SEED_NODE)
def test_a_seed_node_scenario_matches_its_declared_outcome(name: str, run_once, images):
    """(run_once also checks that the run left nothing with its label.)"""
    s = scenario.load(name)
    result = run_once(name)
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert a.sent == s.workload.clients * s.workload.messages
    assert [f.kind for f in result.history.faults] == [f.kind.value for f in s.faults]
    if s.topology.app in {AppKind.SEED_NODE_WS, AppKind.SEED_NODE_SOCKETIO}:
        assert images.node is not None and result.images["app"] == images.node.source
        assert result.versions["app node"].startswith("18.")  # Debian bookworm's nodejs
        # a replica killed and started again may still be starting when the run reads its health
        answered = [r for r in result.replicas.values() if r.get("status") == 200]
        assert answered and all(r.get("app") == s.topology.app.value for r in answered), result.replicas
    if name == "seed-node-glob":  # Redis took every message, and no subscriber was on its channel
        assert a.delivered == 0 and a.acked == a.sent > 0
        assert result.history.probes["published_to_nobody"] == a.sent
    if name == "seed-node-pubsub":
        assert a.delivered == a.expected > 0 and a.cross_delivered == a.cross_expected > 0
    if name == "seed-node-socketio-no-adapter":
        assert a.same_delivered == a.same_expected > 0 and a.cross_expected > 0 and a.cross_delivered == 0


@pytest.mark.parametrize("app", [AppKind.SEED_NODE_WS, AppKind.SEED_NODE_SOCKETIO])
def test_a_node_replica_exits_cleanly_on_sigterm(app: AppKind, client, images):
    protocol = for_app(app)
    spec = StackSpec(run_id=new_run_id(), replicas=1, broker="redis-pubsub", images=images,
                     balancer_conf=render_nginx(for_replicas(1)), app_module=protocol.app_module,
                     app_command=protocol.replica_command(), app_image=protocol.replica_image(images).tag)
    with open_stack(client, spec) as stack:
        replica = stack.containers["app-1"]
        replica.stop(timeout=10)  # a replica that ignored SIGTERM would be SIGKILLed after 10 s: exit code 137
        replica.reload()
        assert replica.attrs["State"]["ExitCode"] == 0, replica.logs().decode()
        assert "app-1 stopping on signal" in replica.logs().decode()
    assert left_by(client, spec.run_id) == []
