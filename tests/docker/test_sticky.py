"""Socket.IO behind every balancing policy, and a sticky server killed — real nginx, replicas, Redis, clients."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import docker.errors

from labs import scenario
from labs.infra import inspect
from labs.infra.launch import open_stack
from labs.infra.nginx_probe import nginx_version
from labs.infra.render import Sticky, for_replicas, render_nginx
from labs.infra.stack import StackSpec
from labs.report import table
from labs.scenario import Balance, Metric
from labs.settings import LABEL, OWNER, OWNER_LABEL, ROOT

from .conftest import lab_resources


def run(run_once, name: str):
    result = run_once(name)
    return result, result.accounting


def test_ip_hash_puts_one_24_on_a_single_replica(run_once, nothing_left):
    result, acc = run(run_once, "sticky-ip-hash-polling")
    assert sorted(acc.placement.values()) == [0, 0, 30]
    assert result.values[Metric.HTTP_ERRORS] == 0 and acc.joined == 30
    assert acc.delivered == acc.expected > 0
    assert result.passed, result.verdict.reason


def test_ip_hash_spreads_clients_from_distinct_24s_through_a_trusted_forwarded_for(run_once, nothing_left):
    result, acc = run(run_once, "sticky-ip-hash-subnets")
    assert all(acc.placement.values()) and result.values[Metric.HTTP_ERRORS] == 0
    # realip trusts the run's own client network (never the pre-start placeholder) and nginx saw the header
    assert "real_ip_header X-Forwarded-For;" in result.balancer_conf and "192.0.2.0/24" not in result.balancer_conf
    assert " 198.18." in result.logs["nginx"]
    assert result.passed, result.verdict.reason


def test_hash_spreads_distinct_addresses_with_no_400(run_once, nothing_left):
    result, acc = run(run_once, "sticky-hash-subnets")
    assert all(acc.placement.values()) and result.values[Metric.SESSION_UNKNOWN] == 0
    assert "hash $remote_addr consistent;" in result.balancer_conf
    assert result.passed, result.verdict.reason


def test_websocket_only_needs_no_stickiness(run_once, nothing_left):
    result, acc = run(run_once, "sticky-websocket-round-robin")
    h = result.history
    assert {e.kind for e in h.http} == {"websocket"} and all(e.status == 101 for e in h.http)
    assert acc.placement == {"app-1": 10, "app-2": 10, "app-3": 10}
    assert acc.delivered == acc.expected == 150 * 29 and acc.cross_delivered > 0
    assert result.passed, result.verdict.reason


def test_without_a_manager_room_messages_stay_on_the_senders_replica(run_once, nothing_left):
    result, acc = run(run_once, "socketio-no-manager")
    assert acc.same_delivered == acc.same_expected > 0
    assert acc.cross_expected > 0 and acc.cross_delivered == 0
    # the default transport upgraded to WebSocket after its polling handshake, through the cookie
    assert {"handshake", "websocket"} <= {e.kind for e in result.history.http}
    assert result.passed, result.verdict.reason


def test_the_redis_manager_carries_room_messages_across_replicas(run_once, nothing_left):
    result, acc = run(run_once, "socketio-redis-manager")
    assert acc.cross_delivered == acc.cross_expected > 0 and acc.lost == 0
    assert all(r.get("ok") and r.get("manager") == "ConfirmedRedisManager" for r in result.replicas.values())
    assert result.passed, result.verdict.reason


def test_killing_a_sticky_replica_drops_only_its_clients_who_come_back_elsewhere(run_once, nothing_left):
    result, acc = run(run_once, "sticky-cookie-failover")
    h = result.history
    (fault,) = h.faults
    on_app2 = {s.client for s in h.sessions if s.replica == "app-2" and s.opened < fault.applied}
    assert len(on_app2) == 10 and {s.client for s in h.sessions if s.closed is not None} == on_app2
    for name in on_app2:
        later = [s for s in h.sessions if s.client == name and s.opened > fault.applied]
        assert later, f"{name} never came back"
        assert later[0].replica != "app-2" or later[0].opened > fault.healed
    assert acc.failover.reconnect_max_s is not None and acc.failover.reconnect_max_s <= 5.0
    assert acc.lost_undisturbed == 0 and acc.failover.missed_while_away > 0
    assert result.passed, result.verdict.reason


def test_scenario_sticky_rows_print_as_a_table_and_results_say_placement_and_sticky(client, images, run_once,
                                                                                   nothing_left):
    """The tables and results `make scenario-sticky` prints and writes (tests/unit/test_cli.py checks that
    `labs run` prints them and exits 0: a failure as declared is a pass)."""
    text = table.table([run_once("sticky-round-robin-polling"), run_once("sticky-cookie-polling")])
    summary, title, detail = text.split("\n\n")  # the summary, then the one Socket.IO table
    verdicts = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in summary.splitlines()[2:]
                if line.startswith("| ")}
    assert verdicts == {"sticky-round-robin-polling": "fails as expected", "sticky-cookie-polling": "as expected"}
    header, _, *lines = detail.splitlines()
    assert title == "Socket.IO" and 'HTTP 400 "Session ID unknown"' in header and "clients per replica" in header
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert "0/30" in rows["sticky-round-robin-polling"] and "30/30" in rows["sticky-cookie-polling"]
    assert "cookie stickiness — nginx " in text

    rr = run_once.written("sticky-round-robin-polling")
    result = json.loads((rr / "result.json").read_text())
    sio = result["socketio"]
    history = json.loads((rr / "history.json").read_text())
    assert result["counts"]["joined"] == 0 and sio["http"]["pollers_with_400"] == sio["http"]["pollers"] == 30
    for c in history["clients"]:  # recorded per client, with the server's own words
        mine = [e for e in history["http"] if e["client"] == c["name"]]
        assert mine[0]["kind"] == "handshake" and mine[0]["status"] == 200
        assert any(e["status"] == 400 and "Invalid session" in e["detail"] for e in mine)
        assert "transport closed before joining: 400" in c["error"]

    ck = run_once.written("sticky-cookie-polling")
    result = json.loads((ck / "result.json").read_text())
    sio = result["socketio"]
    assert sum(result["placement"].values()) == 30
    assert result["metrics"]["placement_max_min"] <= 1.5 and sio["http"]["http_errors"] == 0
    conf = (ck / "nginx.conf").read_text()
    if nginx_version(client, images.nginx.tag) < (1, 29, 6):
        assert "open-source construction" in sio["sticky"] and "map $cookie_wslab_srv $sticky_upstream" in conf
    else:
        assert "native" in sio["sticky"] and "sticky cookie wslab_srv" in conf


def _tar(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_policy_renders_a_config_nginx_accepts(client, images, nothing_left):
    """`nginx -t` on each policy (and realip); native `sticky cookie` is refused by an nginx older than 1.29.6,
    which is why the version is detected."""
    version = nginx_version(client, images.nginx.tag)
    configs = {f"{b.value}.conf": render_nginx(for_replicas(3, balance=b, realip_from="172.16.0.0/12"))
               for b in Balance}
    native = render_nginx(for_replicas(3, balance=Balance.COOKIE, sticky=Sticky.NATIVE))
    hosts = {f"app-{i}": f"192.0.2.{i}" for i in (1, 2, 3)}  # nginx -t resolves upstream names only
    container = client.containers.create(images.nginx.tag, ["sleep", "60"], labels={LABEL: "nginx-t", OWNER_LABEL: OWNER},
                                         extra_hosts=hosts, network_mode="none", detach=True)
    try:
        container.start()
        container.put_archive("/tmp", _tar({**configs, "native.conf": native}))
        for name in configs:
            code, out = container.exec_run(["nginx", "-t", "-c", f"/tmp/{name}"])
            assert code == 0, f"{name}: {out.decode()}"
        code, out = container.exec_run(["nginx", "-t", "-c", "/tmp/native.conf"])
        if version >= (1, 29, 6):
            assert code == 0, out.decode()
        else:
            assert code != 0 and 'unknown directive "sticky"' in out.decode()
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def test_a_socketio_replica_exits_cleanly_on_sigterm(client, images, nothing_left):
    spec = StackSpec(run_id="siosigt0", replicas=1, broker="redis-pubsub", images=images,
                     balancer_conf=render_nginx(for_replicas(1)), app_module="wslab_app.sio")
    with open_stack(client, spec) as stack:
        assert inspect.health(stack, "app-1")["ok"]  # ready only once its Redis subscription answered
        app = stack.containers["app-1"]
        app.stop(timeout=10)
        app.reload()
        assert app.attrs["State"]["ExitCode"] == 0
        assert "stopping on signal" in app.logs().decode()


def test_bad_sticky_input_is_one_line_exit_2_and_starts_nothing(client, tmp_path: Path, nothing_left):
    base = scenario.load("sticky-cookie-polling").path.read_text()
    bad = {
        "policy": base.replace('balance = "cookie"', 'balance = "sticky-route"'),
        "cookie": base.replace('cookie_name = "wslab_srv"', 'cookie_name = "srv; proxy_pass http://x"'),
        "kill": base.replace("[expect]", '[[faults]]\nkind = "kill-replica"\ntarget = "app-7"\nat = 0.1\n\n[expect]'),
    }
    for what, text in bad.items():
        path = tmp_path / f"bad-{what}.toml"
        path.write_text(text)
        r = subprocess.run([sys.executable, "-m", "labs", "run", str(path)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (what, r.stderr)
        assert lab_resources(client) == ([], []), what
