import pytest

from labs.infra.render import (
    NginxConfig,
    RenderError,
    Sticky,
    Upstream,
    for_replicas,
    parse_nginx_version,
    render_nginx,
)
from labs.scenario import Balance


def test_round_robin_config_lists_every_replica_and_the_upgrade_idiom():
    conf = render_nginx(for_replicas(3))
    for i in (1, 2, 3):
        assert f"server app-{i}:8000 max_fails=0;" in conf
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


def test_ip_hash_and_hash_policies_render_their_directive():
    assert "        ip_hash;" in render_nginx(for_replicas(3, balance=Balance.IP_HASH))
    assert "        hash $remote_addr;" in render_nginx(for_replicas(3, balance=Balance.HASH))
    assert "        hash $remote_addr consistent;" in render_nginx(for_replicas(3, balance=Balance.HASH_CONSISTENT))
    assert "        hash $arg_room consistent;" in render_nginx(for_replicas(3, balance=Balance.ROOM))


def test_cookie_on_old_nginx_routes_by_a_whitelisted_map_and_sets_the_cookie_from_the_replica_header():
    conf = render_nginx(for_replicas(3, balance=Balance.COOKIE, cookie_name="srv", sticky=Sticky.MAP))
    assert "sticky cookie srv" not in conf
    assert "map $cookie_srv $sticky_upstream {" in conf and "default app;" in conf
    for i in (1, 2, 3):
        assert f"app-{i} sticky-app-{i};" in conf
        assert f'app-{i} "srv=app-{i}; Path=/; HttpOnly; SameSite=Lax";' in conf
        assert f"upstream sticky-app-{i} {{\n        server app-{i}:8000;\n" in conf
    # the other replicas back each sticky upstream up, so a dead replica's clients move on
    assert "upstream sticky-app-2 {\n        server app-2:8000;\n        server app-1:8000 backup;\n" in conf
    assert "map $upstream_http_x_wslab_replica $sticky_set_cookie" in conf
    assert "proxy_pass http://$sticky_upstream;" in conf and "add_header Set-Cookie $sticky_set_cookie;" in conf


def test_cookie_on_new_nginx_uses_the_native_directive():
    conf = render_nginx(for_replicas(2, balance=Balance.COOKIE, cookie_name="srv", sticky=Sticky.NATIVE))
    assert "sticky cookie srv path=/ httponly samesite=lax;" in conf
    assert "$sticky_upstream" not in conf and "proxy_pass http://app;" in conf


def test_the_native_directive_is_chosen_from_1_29_6_on():
    assert Sticky.for_version((1, 22, 1)) is Sticky.MAP
    assert Sticky.for_version((1, 29, 5)) is Sticky.MAP
    assert Sticky.for_version((1, 29, 6)) is Sticky.NATIVE
    assert Sticky.for_version((1, 30, 0)) is Sticky.NATIVE
    assert parse_nginx_version("nginx version: nginx/1.22.1\n") == (1, 22, 1)
    with pytest.raises(RenderError, match="cannot read an nginx version"):
        parse_nginx_version("sh: nginx: not found")


def test_realip_trusts_forwarded_for_only_from_the_given_network():
    plain = render_nginx(for_replicas(3, balance=Balance.IP_HASH))
    assert "set_real_ip_from" not in plain and "real_ip_header" not in plain
    conf = render_nginx(for_replicas(3, balance=Balance.IP_HASH, realip_from="172.19.0.0/16"))
    assert "set_real_ip_from 172.19.0.0/16;" in conf and "real_ip_header X-Forwarded-For;" in conf


@pytest.mark.parametrize("name", ["srv;", "srv id", "srv=1", "1srv", "a" * 33, "srv\n", "", "s-rv"])
def test_a_cookie_name_that_could_inject_is_refused(name):
    with pytest.raises(RenderError, match="bad cookie name"):
        for_replicas(2, balance=Balance.COOKIE, cookie_name=name)


@pytest.mark.parametrize("net", ["0.0.0.0/0; evil", "example.org", "172.19.0.1", "172.19.0.1/16", "all", ""])
def test_a_trusted_network_that_is_not_a_plain_cidr_is_refused(net):
    with pytest.raises(RenderError, match="bad trusted client network"):
        for_replicas(2, realip_from=net)


def test_an_unknown_policy_is_refused():
    with pytest.raises(RenderError, match="unknown balancing policy 'sticky'"):
        NginxConfig(for_replicas(1).replicas, balance="sticky")  # type: ignore[arg-type]


def test_default_config_listens_once_without_reuseport_and_logs_access():
    conf = render_nginx(for_replicas(3))
    assert "        listen 8080;\n" in conf and "reuseport" not in conf
    assert "worker_processes 1;" in conf and "worker_rlimit_nofile" not in conf
    assert "access_log /dev/stdout lab;" in conf


def test_many_listen_ports_with_reuseport_and_a_file_limit_per_worker():
    config = NginxConfig(for_replicas(2).replicas, workers=14, worker_connections=19000,
                         extra_listen_ports=(8081, 8082), reuseport=True, worker_rlimit_nofile=20000,
                         access_log=False)
    conf = render_nginx(config)
    assert "worker_processes 14;\nworker_rlimit_nofile 20000;\n" in conf
    assert "listen 8080 reuseport;\n        listen 8081 reuseport;\n        listen 8082 reuseport;\n" in conf
    assert "    access_log off;\n" in conf and "/dev/stdout" not in conf


@pytest.mark.parametrize("extra", [(8080,), (8081, 8081), (80,), (70000,), ("8081;",)])
def test_bad_extra_listen_ports_are_refused(extra):
    with pytest.raises(RenderError, match="bad extra listen ports"):
        NginxConfig(for_replicas(1).replicas, extra_listen_ports=extra)


def test_worker_limits_are_bounded_and_consistent():
    replicas = for_replicas(1).replicas
    with pytest.raises(RenderError, match="workers must be 1..32"):
        NginxConfig(replicas, workers=33)
    with pytest.raises(RenderError, match="worker_rlimit_nofile 100 must be"):
        NginxConfig(replicas, worker_rlimit_nofile=100)
    with pytest.raises(RenderError, match="worker_connections 19000 exceeds worker_rlimit_nofile 4096"):
        NginxConfig(replicas, worker_connections=19000, worker_rlimit_nofile=4096)
