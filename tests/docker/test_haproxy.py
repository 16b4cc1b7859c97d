"""HAProxy in front of the replicas: every policy's config accepted by the image's own haproxy, a rejected
config stopping the stack in HAProxy's words, a reload on its signal, and two scenarios run whole — a
WebSocket one and Socket.IO long-polling behind its cookie."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import urllib.request

import docker.errors
import pytest
import websockets

from labs.errors import StackError
from labs.infra.balancers import HAPROXY, READY_PATH
from labs.infra.render_haproxy import for_replicas, render_haproxy
from labs.infra.stack import UNPRIVILEGED, Stack, StackSpec
from labs.scenario import Balance, Metric
from labs.settings import LABEL, OWNER, OWNER_LABEL


def _tar(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_policy_renders_a_config_the_images_haproxy_accepts(client, images, nothing_left):
    """`haproxy -c` on each policy, with realip and the soft-stop knobs, as the stack runs it (unprivileged);
    and a broken one refused in HAProxy's own words."""
    configs = {f"{b.value}.cfg": render_haproxy(for_replicas(3, balance=b, realip_from="172.16.0.0/12",
                                                            hard_stop_after=30, close_spread_time=5))
               for b in Balance}
    configs["broken.cfg"] = configs["cookie.cfg"].replace("    balance roundrobin\n", "    balance nearest\n")
    hosts = {f"app-{i}": f"192.0.2.{i}" for i in (1, 2, 3)}  # haproxy -c resolves server names only
    container = client.containers.create(HAPROXY.image(images).tag, ["sleep", "60"], extra_hosts=hosts,
                                         labels={LABEL: "haproxy-c", OWNER_LABEL: OWNER}, network_mode="none",
                                         detach=True, **UNPRIVILEGED)
    try:
        container.start()
        container.put_archive("/tmp", _tar(configs))
        for name in configs:
            code, out = container.exec_run([*HAPROXY.check, f"/tmp/{name}"])
            if name == "broken.cfg":
                line = HAPROXY.rejected(out.decode())
                assert code != 0 and line is not None and "balance only supports" in line, out.decode()
            else:
                assert code == 0 and "Configuration file is valid" in out.decode(), f"{name}: {out.decode()}"
        code, out = container.exec_run(list(HAPROXY.version_command))
        assert HAPROXY.version(out.decode()).startswith("2.6."), out.decode()
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def spec(images, run_id: str, conf: str) -> StackSpec:
    return StackSpec(run_id=run_id, replicas=1, broker="none", images=images, balancer=HAPROXY, balancer_conf=conf)


def test_a_config_haproxy_rejects_stops_the_stack_in_one_line(client, images, nothing_left):
    bad = render_haproxy(for_replicas(1)).replace("    nbthread 1\n", "    nbthread 1\n    bogus_keyword on\n")
    with pytest.raises(StackError) as info:
        with Stack(client, spec(images, "haprejct", bad)):
            pass
    message = str(info.value)
    assert message.startswith("haproxy rejected the rendered config (haproxy -c): ") and "\n" not in message
    assert "unknown keyword 'bogus_keyword' in 'global' section" in message


def test_haproxy_runs_unprivileged_and_reloads_on_its_signal(client, images, nothing_left):
    with Stack(client, spec(images, "hapreload", render_haproxy(for_replicas(1)))) as stack:
        container = stack.containers[HAPROXY.name]
        container.reload()
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == "65534:65534" and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        base = f"http://127.0.0.1:{stack.port}"
        assert urllib.request.urlopen(f"{base}/_lab/app-1/healthz", timeout=5).status == 200
        container.kill(signal=HAPROXY.reload_signal)
        # the master starts a new worker on the config it reads again; the old one leaves
        deadline, logs = time.monotonic() + 10, ""
        while time.monotonic() < deadline:  # polls the log for what the reload says, not a fixed wait
            logs = container.logs().decode(errors="replace")
            if logs.count("Loading success") >= 2 and "Former worker" in logs:
                break
            time.sleep(0.05)
        assert logs.count("Loading success") >= 2 and "Former worker" in logs, logs
        assert urllib.request.urlopen(f"{base}{READY_PATH}", timeout=5).status == 200
        container.reload()
        assert container.status == "running"


async def _closes_after_reload(port: int, clients: int, reload) -> tuple[list[float], set[int | None]]:
    """Open `clients` WebSockets, reload, and return when each closed (seconds after the signal) and how."""
    socks = [await websockets.connect(f"ws://127.0.0.1:{port}/ws?room=lobby&client=c{i}", ping_interval=None)
             for i in range(clients)]
    closed: dict[int, float] = {}

    async def watch(i: int, ws) -> None:
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        closed[i] = time.monotonic()

    tasks = [asyncio.create_task(watch(i, ws)) for i, ws in enumerate(socks)]
    t0 = time.monotonic()
    await asyncio.to_thread(reload)
    await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        task.cancel()
    return sorted(t - t0 for t in closed.values()), {ws.close_code for ws in socks}


def test_a_soft_stop_cuts_websockets_at_hard_stop_after_whatever_the_spread(client, images, nothing_left):
    """HAProxy 2.6's close-spread-time spreads the closes of idle and HTTP connections; an upgraded WebSocket
    is a tunnel: the old worker keeps it until hard-stop-after, then cuts every one at once, without a close
    frame (1006). `-s` prints the close times (12 clients, hard-stop-after 3 s, close-spread-time 2 s: all
    12 at 3.07 s after SIGUSR2 on the 2-core VM)."""
    conf = render_haproxy(for_replicas(2, hard_stop_after=3, close_spread_time=2))
    with Stack(client, StackSpec(run_id="hapsoft0", replicas=2, broker="none", images=images, balancer=HAPROXY,
                                 balancer_conf=conf)) as stack:
        container = stack.containers[HAPROXY.name]
        times, codes = asyncio.run(_closes_after_reload(stack.port, 12, lambda: container.kill(
            signal=HAPROXY.reload_signal)))
    print(f"closed after the reload: {[round(t, 2) for t in times]} s, codes {codes}")
    assert len(times) == 12 and codes == {1006}
    assert times[0] >= 2.9, "a WebSocket closed before hard-stop-after: the spread reached a tunnel"
    assert times[-1] - times[0] < 1.0, "the hard stop cuts every tunnel at once"


def test_a_websocket_room_behind_haproxy_delivers_every_message_once(run_once, nothing_left):
    result = run_once("pubsub-haproxy")
    acc = result.accounting
    assert acc is not None and acc.expected > 0 and acc.delivered == acc.expected
    assert acc.lost == acc.duplicated == 0 and sorted(acc.placement.values()) == [4, 4, 4]
    assert "haproxy" in result.logs and "nginx" not in result.logs
    assert result.versions["haproxy"].startswith("2.6.") and "Debian haproxy 2.6" in result.images["haproxy"]
    assert "    balance roundrobin\n" in result.balancer_conf and "timeout tunnel 75s" in result.balancer_conf
    assert result.passed, result.verdict.reason


def test_socketio_long_polling_sticks_through_haproxys_cookie(run_once, nothing_left):
    result = run_once("sticky-cookie-polling-haproxy")
    acc = result.accounting
    assert acc is not None and acc.joined == 30 and all(acc.placement.values())
    assert result.values[Metric.SESSION_UNKNOWN] == 0 and result.values[Metric.HTTP_ERRORS] == 0
    assert "cookie wslab_srv insert indirect nocache" in result.balancer_conf
    # HAProxy's log names the server of every request: the cookie spread the clients over all three
    served = {line.split("srv=")[1].split()[0] for line in result.logs["haproxy"].splitlines() if "srv=app-" in line}
    assert served == {"app-1", "app-2", "app-3"}
    assert result.passed, result.verdict.reason
