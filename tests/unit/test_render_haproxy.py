"""HAProxy's config from literal inputs: each policy's directives, the lab's endpoints, realip, the soft-stop
knobs, and hostile values refused before they reach the template."""

import pytest

from labs.infra import render
from labs.infra.balancers import READY_PATH
from labs.infra.render import MIN_READ_TIMEOUT, RenderError, Upstream
from labs.infra.render_haproxy import HaproxyConfig, for_replicas, render_haproxy
from labs.scenario import Balance


def backend(conf: str) -> str:
    """The `backend app` section: from its header to the next blank line."""
    return conf.split("\nbackend app\n", 1)[1].split("\n\n", 1)[0] + "\n"


@pytest.mark.parametrize("balance, directives", [
    (Balance.ROUND_ROBIN, ["balance roundrobin"]),
    (Balance.IP_HASH, ["balance source"]),
    (Balance.HASH, ["balance source", "hash-type map-based sdbm avalanche"]),
    (Balance.HASH_CONSISTENT, ["balance source", "hash-type consistent"]),
    (Balance.COOKIE, ["balance roundrobin", 'cookie srv insert indirect nocache httponly attr "SameSite=Lax"']),
    (Balance.ROOM, ["balance url_param room", "hash-type consistent"]),
])
def test_each_policy_renders_its_directives_in_the_backend(balance, directives):
    section = backend(render_haproxy(for_replicas(3, balance=balance, cookie_name="srv")))
    lines = [line.strip() for line in section.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines[:len(directives)] == directives
    cookie = balance is Balance.COOKIE
    for i in (1, 2, 3):
        assert f"    server app-{i} app-{i}:8000 id {i}{f' cookie app-{i}' if cookie else ''}\n" in section
    if balance is Balance.IP_HASH:
        assert "hash-type" not in section  # HAProxy's default map-based, as nginx's ip_hash is not consistent
    if not cookie:
        assert "cookie" not in section.replace("# ", "")


def test_every_policy_has_a_template():
    for policy in Balance:
        assert "\nbackend app\n" in render_haproxy(for_replicas(2, balance=policy))


def test_timeouts_outlive_the_ping_interval_and_tunnels_are_websockets():
    conf = render_haproxy(for_replicas(1))
    for line in ("timeout client 75s", "timeout server 75s", "timeout tunnel 75s", "timeout connect 1000ms"):
        assert f"    {line}\n" in conf
    assert "    mode http\n" in conf
    with pytest.raises(RenderError, match=f"read_timeout 30s must be {MIN_READ_TIMEOUT}"):
        HaproxyConfig(for_replicas(1).replicas, read_timeout=30)


def test_the_lab_endpoints_are_answered_by_the_balancer_and_by_each_replica_alone():
    conf = render_haproxy(for_replicas(2))
    assert f'http-request return status 200 content-type text/plain string "ok\\n" if {{ path {READY_PATH} }}' in conf
    # any app-N's /healthz, by its name resolved when asked (Docker's DNS): not only the servers listed here
    assert "    acl lab_replica path_reg ^/_lab/app-[0-9]+/healthz$\n" in conf
    assert "    http-request do-resolve(txn.lab_addr,docker,ipv4) var(txn.lab_replica) if lab_replica\n" in conf
    assert "resolvers docker\n    nameserver dns 127.0.0.11:53\n" in conf
    lab = conf.split("\nbackend lab-replica\n", 1)[1]
    assert "    http-request set-path /healthz\n    http-request set-dst var(txn.lab_addr)\n" in lab
    assert "    server replica 0.0.0.0:8000\n" in lab and "lab-app-" not in conf
    assert conf.index("use_backend lab-replica if lab_replica") < conf.index("    default_backend app\n")
    # nginx answers the same path: the stack's readiness probe is one for both
    assert f"location = {READY_PATH} {{" in render.render_nginx(render.for_replicas(1))


def test_one_thread_pid_socket_under_tmp_and_logs_on_stdout():
    conf = render_haproxy(for_replicas(1))
    assert "    nbthread 1\n    # " in conf and "    maxconn 2048\n" in conf.split("\ndefaults\n")[0]
    assert "    bind :8080\n    maxconn 2048\n" in conf  # the frontend's own limit, else HAProxy's global one
    assert "    pidfile /tmp/haproxy.pid\n" in conf and "    stats socket /tmp/haproxy.sock mode 600 level user\n" in conf
    assert "    log stdout format raw local0\n" in conf and "    log global\n" in conf
    directives = {line.split()[0] for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    assert not directives & {"user", "group", "uid", "gid", "chroot"}  # it starts unprivileged: nothing to drop


def test_realip_takes_the_source_from_forwarded_for_only_from_the_given_network():
    plain = render_haproxy(for_replicas(3, balance=Balance.IP_HASH))
    assert "set-src" not in plain
    conf = render_haproxy(for_replicas(3, balance=Balance.IP_HASH, realip_from="172.19.0.0/16"))
    assert "    http-request set-src hdr(x-forwarded-for) if { src 172.19.0.0/16 }\n" in conf
    # before anything reads the source: the balancing and the X-Real-IP the replicas get
    assert conf.index("set-src") < conf.index("set-header X-Real-IP %[src]") < conf.index("backend app")


def test_the_soft_stop_knobs_are_rendered_in_milliseconds_only_when_set():
    plain = render_haproxy(for_replicas(1))
    assert "hard-stop-after" not in plain and "close-spread-time" not in plain
    conf = render_haproxy(for_replicas(1, hard_stop_after=30, close_spread_time=2.5))
    assert "    hard-stop-after 30000ms\n" in conf and "    close-spread-time 2500ms\n" in conf
    assert conf.index("close-spread-time") < conf.index("\ndefaults\n")  # both are global


@pytest.mark.parametrize("kwargs, message", [
    ({"hard_stop_after_ms": 1000, "close_spread_time_ms": 1000}, "must be less than hard_stop_after_ms 1000"),
    ({"hard_stop_after_ms": 0}, "hard_stop_after_ms 0 must be 1..3600000"),
    ({"close_spread_time_ms": 3_600_001}, "close_spread_time_ms 3600001 must be"),
    ({"hard_stop_after_ms": True}, "hard_stop_after_ms True must be"),
    ({"hard_stop_after_ms": "30s; user root"}, "must be 1..3600000"),
    ({"cookie_name": "srv insert\n  server evil 1.2.3.4:80"}, "bad cookie name"),
    ({"cookie_name": 'srv" attr "x'}, "bad cookie name"),
    ({"realip_from": "0.0.0.0/0 }\n  http-request deny"}, "bad trusted client network"),
    ({"realip_from": "172.19.0.1/16"}, "bad trusted client network"),
    ({"balance": "leastconn"}, "unknown balancing policy 'leastconn'"),
    ({"listen_port": 80}, "bad listen port 80"),
    ({"listen_port": "8080\n  bind :22"}, "bad listen port"),
    ({"threads": 0}, "threads must be 1..32"),
    ({"maxconn": 10**6}, "maxconn 32..65536"),
    ({"connect_timeout_ms": 5}, "connect_timeout_ms 5 must be 100..60000"),
])
def test_hostile_or_senseless_values_are_refused(kwargs, message):
    with pytest.raises(RenderError) as info:
        HaproxyConfig(for_replicas(2).replicas, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["app-1 127.0.0.1:22", "app-1\n  server evil", "app_1", "APP", ""])
def test_a_server_name_that_could_inject_is_refused(name):
    with pytest.raises(RenderError, match="bad upstream name"):
        Upstream(name, "app-1", 8000)


def test_a_missing_template_value_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "haproxy").mkdir()
    (tmp_path / "haproxy" / "haproxy.cfg.j2").write_text("bind :{{ no_such_value }}\n")
    with pytest.raises(RenderError, match="no_such_value"):
        render_haproxy(for_replicas(1), templates=tmp_path)
    with pytest.raises(RenderError, match="haproxy template not found"):
        render_haproxy(for_replicas(1), templates=tmp_path / "nowhere")
