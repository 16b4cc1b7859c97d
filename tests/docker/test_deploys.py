"""Topology changes on real containers: a replica added, one drained and stopped, the replicas replaced
one at a time, nginx reloaded with open WebSockets. A small set of the deploy-* scenarios, each run once per
session; the declared outcome holds and the figures that say what the change did are the expected ones."""

from __future__ import annotations


def test_a_scale_out_under_a_consistent_hash_moves_few_clients_and_adds_a_replica_everything_sees(
        run_once, nothing_left):
    result = run_once("deploy-scaleout-hash-consistent")
    a = result.accounting
    assert result.passed, result.verdict.reason
    # the replica the scale-out made is in the upstream, answered /healthz, served clients, and was removed
    assert result.history.replicas == ["app-1", "app-2", "app-3", "app-4"]
    assert result.replicas["app-4"]["status"] == 200 and a.placement.keys() >= {"app-4"}
    assert any(s.replica == "app-4" for s in result.history.sessions)
    assert "server app-4:8000 " in result.balancer_conf and "worker_shutdown_timeout 1000ms;" in result.balancer_conf
    assert set(result.states.values()) == {"running"} and "app-4" in result.states
    # every WebSocket was cut once by the old workers, every client came back through the new upstream
    assert a.drops == 60 and a.failover.reconnected == 60
    assert 0 < a.remap.moved < 30 and a.p99_in_change_ms is not None
    (fault,) = result.history.faults
    assert fault.kind == "scale-out" and fault.reaches == ("app-4", "lb")


def test_a_scale_in_drains_then_stops_the_replica_and_only_its_clients_move(run_once, nothing_left):
    result = run_once("deploy-scalein-pubsub")
    a = result.accounting
    assert result.passed, result.verdict.reason
    assert result.states["app-3"] == "exited" and "app-3" not in result.replicas
    assert "app-3" not in result.balancer_conf
    moved = [s for s in result.history.sessions if s.closed is not None]
    assert {s.replica for s in moved} == {"app-3"} and a.remap.moved == a.remap.reconnected == 4


def test_a_rolling_restart_is_one_window_per_replica_and_loses_only_inside_them(run_once, nothing_left):
    result = run_once("deploy-pubsub-rolling-kill")
    assert result.passed, result.verdict.reason
    steps = result.history.faults
    assert [(f.kind, f.target, f.reaches) for f in steps] == [
        ("rolling-restart", f"app-{i}", (f"app-{i}",)) for i in (1, 2, 3)]
    assert all(a.healed is not None and a.healed <= b.applied for a, b in zip(steps, steps[1:]))
    assert set(result.states.values()) == {"running"}


def test_a_reload_keeps_every_websocket_unless_a_shutdown_timeout_cuts_them(run_once, nothing_left):
    kept, cut = run_once("deploy-reload-no-timeout"), run_once("deploy-reload-timeout")
    assert kept.passed, kept.verdict.reason
    assert cut.passed, cut.verdict.reason
    assert kept.accounting.drops == 0 and "worker_shutdown_timeout" not in kept.balancer_conf
    assert cut.accounting.drops == 12 and "worker_shutdown_timeout 500ms;" in cut.balancer_conf
    # nginx took the config the reload wrote (it logs [emerg] when it refuses one)
    assert "[emerg]" not in cut.logs["nginx"]


def test_a_scale_out_behind_haproxy_renders_its_backend_again_and_cuts_at_hard_stop_after(run_once, nothing_left):
    result = run_once("deploy-scaleout-hash-consistent-haproxy")
    a = result.accounting
    assert result.passed, result.verdict.reason
    # app-4 answered its /healthz through HAProxy before it was a server (resolved by name when asked), then
    # joined the backend with its own id; the old process cut every WebSocket at hard-stop-after
    assert result.history.replicas == ["app-1", "app-2", "app-3", "app-4"]
    assert result.replicas["app-4"]["status"] == 200 and any(s.replica == "app-4" for s in result.history.sessions)
    assert "    server app-4 app-4:8000 id 4\n" in result.balancer_conf
    assert "    hard-stop-after 1000ms\n" in result.balancer_conf and "[ALERT]" not in result.logs["haproxy"]
    assert a.drops == 60 and a.failover.reconnected == 60 and 0 < a.remap.moved < 30
    (fault,) = result.history.faults
    assert fault.kind == "scale-out" and fault.reaches == ("app-4", "lb")
