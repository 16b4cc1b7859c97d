import pytest

from labs.render import NginxConfig, RenderError, Upstream, for_replicas, render_nginx
from labs.scenario import Balance


def test_round_robin_config_lists_every_replica_and_the_upgrade_idiom():
    conf = render_nginx(for_replicas(3))
    for i in (1, 2, 3):
        assert f"server app-{i}:8000;" in conf
    assert "map $http_upgrade $connection_upgrade" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert "ip_hash" not in conf and "hash $" not in conf


def test_timeouts_exceed_the_ping_interval():
    conf = render_nginx(for_replicas(1))
    assert "proxy_read_timeout 75s;" in conf
    with pytest.raises(RenderError, match="read_timeout 30s"):
        NginxConfig(for_replicas(1).replicas, read_timeout=30)


@pytest.mark.parametrize("name", ["app-1;", "app 1", "app-1}\nserver evil", "APP", ""])
def test_a_value_that_could_inject_into_the_config_is_refused(name):
    with pytest.raises(RenderError, match="bad upstream name"):
        Upstream(name, "app-1", 8000)


def test_replica_count_is_bounded():
    with pytest.raises(RenderError):
        NginxConfig(())
    with pytest.raises(RenderError):
        for_replicas(33)


def test_a_missing_template_value_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "nginx.conf.j2").write_text("listen {{ no_such_value }};")
    with pytest.raises(RenderError, match="no_such_value"):
        render_nginx(for_replicas(1), templates=tmp_path)


def test_every_balancing_policy_has_a_template():
    for policy in Balance:
        assert render_nginx(for_replicas(2, balance=policy))
