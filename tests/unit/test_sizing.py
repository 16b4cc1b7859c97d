"""How every stack is sized for many WebSockets under the host's open-file limit, with literal limits."""

import pytest

from labs import scenario
from labs.bench.connections.plan import Via, layout_on, plan_layout, proxy_capacity
from labs.infra.render import NginxConfig, RenderError, for_replicas, render_nginx
from labs.infra.sizing import Sizing, SizingError, capacity, size_stack
from labs.spec import plan, render


def test_a_20000_file_limit_and_3_replicas_hold_20000_connections():
    sizing = size_stack(3, fd_limit=20_000)
    assert sizing == Sizing(connections=20_000, wanted=20_000, fd_limit=20_000, replicas=3, nginx_workers=3,
                            worker_connections=19_000, backlog=4096)
    assert not sizing.reduced and sizing.worker_rlimit_nofile == 20_000 and sizing.nofile == 20_000
    # each of 3 nginx workers carries ~6,667 clients at 2 files each, each replica ~6,667 at 1: within 75%
    assert 2 * -(-20_000 // 3) <= 0.75 * 20_000 and -(-20_000 // 3) <= capacity("replica", 20_000) == 15_000
    assert sizing.describe() == ("holds 20,000 connections: nginx 3 workers x 19,000 connections, 3 replica(s), "
                                 "20,000 open files per process")


def test_a_host_that_allows_more_is_still_planned_at_20000_files_a_process():
    assert size_stack(3, fd_limit=1_048_576) == size_stack(3, fd_limit=20_000)


def test_a_low_limit_holds_fewer_and_says_how_many():
    sizing = size_stack(3, fd_limit=4096)
    # a replica carries 75% of 4,096 = 3,072; nginx needs 6 workers of 1,536 clients for 9,216
    assert (sizing.connections, sizing.nginx_workers, sizing.worker_connections) == (9_216, 6, 3_096)
    assert sizing.reduced and sizing.describe().startswith("holds 9,216 of 20,000 connections: nginx 6 workers")


def test_one_replica_holds_three_quarters_of_the_limit():
    sizing = size_stack(1, fd_limit=20_000)
    assert (sizing.connections, sizing.nginx_workers) == (15_000, 2) and sizing.reduced


def test_a_limit_below_1024_is_one_clear_error():
    with pytest.raises(SizingError, match="hard open-file limit is 1000, below the 1024 .* raise it"):
        size_stack(3, fd_limit=1000)
    with pytest.raises(SizingError, match="replicas 0"):
        size_stack(0, fd_limit=20_000)
    with pytest.raises(SizingError, match="connections 0"):
        size_stack(3, fd_limit=20_000, connections=0)


def test_a_hand_made_sizing_is_checked():
    with pytest.raises(SizingError, match="64..20000 worker_connections, got 1 and 30000"):
        Sizing(connections=1, wanted=1, fd_limit=20_000, replicas=1, nginx_workers=1, worker_connections=30_000)


def test_every_scenario_stack_gets_the_sized_nginx():
    p = plan(scenario.load("pubsub"), fd_limit=20_000)
    assert p.sizing == size_stack(3, fd_limit=20_000)
    conf = render(scenario.load("pubsub"))  # this host's limit: whatever it is, within 1024..20000
    assert "worker_rlimit_nofile" in conf and "listen 8080 reuseport backlog=4096;" in conf
    assert "zone app 64k;" in conf and "server app-1:8000 max_fails=0;" in conf


def test_the_connection_bench_plans_from_the_same_sizing():
    layout = plan_layout(20_000, fd_limit=20_000, replicas=3)
    sizing = size_stack(3, fd_limit=20_000)
    assert (layout.nginx_workers, layout.worker_connections, layout.replicas) == (
        sizing.nginx_workers, sizing.worker_connections, sizing.replicas)


def test_the_default_stack_is_reached_on_one_port_and_docker_proxy_carries_far_fewer():
    layout = layout_on(size_stack(3, fd_limit=20_000), ports=1, via=Via.BRIDGE)
    assert (layout.connections, layout.load_processes, layout.listen_ports, layout.concurrency) == (
        20_000, 2, (8080,), 120)
    # one published port is one docker-proxy at 6 files a connection: 2,500 within 75% of 20,000
    assert proxy_capacity(Via.PUBLISHED, 20_000, 28_232) == 2_500
    assert proxy_capacity(Via.BRIDGE, 20_000, 28_232) == 21_174


def test_max_fails_is_off_by_default_and_rendered_with_its_timeout_when_on():
    conf = render_nginx(NginxConfig(for_replicas(2).replicas, max_fails=3, fail_timeout=2))
    assert "server app-2:8000 max_fails=3 fail_timeout=2s;" in conf and "never mark" not in conf
    assert "never mark a replica down" in render_nginx(for_replicas(2))
    with pytest.raises(RenderError, match="max_fails 1001"):
        NginxConfig(for_replicas(1).replicas, max_fails=1001)
    with pytest.raises(RenderError, match="backlog 0"):
        NginxConfig(for_replicas(1).replicas, backlog=0)


def test_refused_counts_connections_that_never_opened_and_those_closed_while_held():
    from labs.bench.defaults import refused

    assert refused({"failed": 5, "closed_while_held": {"1011": 2, "no close frame": 1}}) == 8
    assert refused({"failed": 0, "closed_while_held": {}}) == 0
