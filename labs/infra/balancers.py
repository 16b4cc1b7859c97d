"""The load balancer in front of the replicas, one small adapter per kind: nginx or HAProxy.

An adapter says what the stack needs to run one and what an operation needs to act on it: its container's
name, its image, its command (the config checked first, `nginx -t` or `haproxy -c`, and only then the
server, in the foreground), where its config goes, how it says it rejected that config, the signal that
makes it reload the config (nginx's master: SIGHUP; HAProxy's master-worker: SIGUSR2), and how to ask its
version. Both answer READY_PATH themselves and route `/_lab/<replica>/healthz` to that replica's /healthz.

A running balancer's config is rewritten and reloaded here, and only here (`reload`), with no `docker exec`:
a teardown pauses containers, and Docker 20.10 wedges a container paused with an exec in flight. The config
goes in with the Docker API's archive upload (`put_archive`), the reload is the adapter's signal to its main
process (the Docker API's kill with a signal), and whether it happened is read from the process list the
engine reads on the host (`docker top`): a worker that was not there before is the new generation, and the
old one is gone when none of its workers is left. HAProxy's master takes the next reload only once it has
re-executed itself after the last one (until then it ignores SIGUSR2, and the signal is lost): before each
signal the reload waits until the master catches it, read from the host's /proc/<pid>/status.
"""

from __future__ import annotations

import io
import re
import signal
import tarfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import docker.errors
from docker.models.containers import Container

from ..errors import ImageError, StackError
from ..scenario import Balancer
from .images import Image, ImageSet

#: answered 200 by the balancer itself: it is up and serving (both templates render it)
READY_PATH = "/_lab/lb"
#: the port the balancer listens on in its container (above 1024: no capability needed)
LISTEN_PORT = 8080


@dataclass(frozen=True)
class BalancerAdapter:
    kind: Balancer
    #: the container's name (its role), and the file its rendered config is written to
    name: str
    config_path: str
    #: the program's own check of a config (`<check> <config_path>` exits non-zero when it rejects it)
    check: tuple[str, ...]
    #: the server, in the foreground, as the container's main process
    serve: tuple[str, ...]
    #: what marks a line of its log as its own words about a rejected config
    alert: str
    #: the signal its main process reloads the config on (the config at config_path rewritten first)
    reload_signal: str
    #: prints its version; `version_re` finds it in what that printed
    version_command: tuple[str, ...]
    version_re: str
    #: serving is not yet taking a reload: the stack waits, once it serves, until the main process catches
    #: the reload signal (HAProxy's master re-executes itself after its first load, and a signal that comes
    #: before the new image installed its handler is lost: the container's PID 1 ignores what it has no
    #: handler for)
    await_reloadable: bool = False

    def command(self) -> list[str]:
        """Check the config, and only then serve it (exec: the server is the container's main process)."""
        check = " ".join((*self.check, self.config_path))
        return ["sh", "-c", f"{check} && exec {' '.join((*self.serve, self.config_path))}"]

    def image(self, images: ImageSet) -> Image:
        if self.kind is Balancer.NGINX:
            return images.nginx
        if images.haproxy is None:
            raise ImageError(f"the haproxy image is missing ({images.haproxy_error or 'not built'}); run `make images`")
        return images.haproxy

    def rejected(self, log: str) -> str | None:
        """One line with the balancer's own words when its log says it rejected the config; else None."""
        words = [line for line in log.splitlines() if self.alert in line]
        if not words:
            return None
        said = re.sub(rf"^.*?{re.escape(self.alert)}\s*(\(\d+\)\s*:\s*)?", "", words[0]).strip()
        return f"{self.name} rejected the rendered config ({' '.join(self.check[:2])}): {said}"

    def catches_reload(self, status: str) -> bool:
        """Whether a process whose /proc/<pid>/status is `status` has a handler for the reload signal."""
        match = re.search(r"^SigCgt:\s*([0-9a-fA-F]+)$", status, re.MULTILINE)
        return match is not None and bool(int(match.group(1), 16) >> (signal.Signals[self.reload_signal] - 1) & 1)

    def version(self, text: str) -> str:
        match = re.search(self.version_re, text)
        return match.group(1) if match else text.strip()[:80]


NGINX_CONF = "/etc/wslab/nginx.conf"
HAPROXY_CFG = "/etc/wslab/haproxy.cfg"

NGINX = BalancerAdapter(
    kind=Balancer.NGINX, name="nginx", config_path=NGINX_CONF,
    check=("nginx", "-t", "-q", "-e", "stderr", "-c"), serve=("nginx", "-e", "stderr", "-g", "'daemon off;'", "-c"),
    alert="[emerg]", reload_signal="SIGHUP", version_command=("nginx", "-v"), version_re=r"nginx version: (\S+)")
# -W: master-worker (the master re-reads the config and starts new workers on SIGUSR2, the old ones stop
# softly); -db: in the foreground, logging to stdout/stderr
HAPROXY = BalancerAdapter(
    kind=Balancer.HAPROXY, name="haproxy", config_path=HAPROXY_CFG,
    check=("haproxy", "-c", "-f"), serve=("haproxy", "-W", "-db", "-f"),
    alert="[ALERT]", reload_signal="SIGUSR2", version_command=("haproxy", "-v"), version_re=r"HAProxy version (\S+)",
    await_reloadable=True)

ADAPTERS = {adapter.kind: adapter for adapter in (NGINX, HAPROXY)}
#: every balancer's container name (what a node fault finds on its node)
NAMES = frozenset(adapter.name for adapter in ADAPTERS.values())


def adapter(kind: Balancer) -> BalancerAdapter:
    return ADAPTERS[kind]


#: how long a reload may take to start its new workers
RELOAD_TIMEOUT_S = 10.0
#: beyond the time the old workers were given, how long they may take to be gone
RETIRE_SLACK_S = 10.0
POLL_S = 0.02


def archive(path: str, text: str) -> bytes:
    """A tar holding one file, `path` (absolute), with `text`: what `put_archive("/", ...)` unpacks."""
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_config(container: Container, balancer: BalancerAdapter, text: str) -> None:
    container.put_archive("/", archive(balancer.config_path, text))


def processes(container: Container) -> list[tuple[str, str]]:
    """(pid, parent pid) of every process of the container, as the engine lists them on the host (`docker
    top`, no exec)."""
    top = container.top()
    titles = top.get("Titles") or []
    pid, ppid = titles.index("PID"), titles.index("PPID")
    return [(row[pid], row[ppid]) for row in top.get("Processes") or []]


def workers(container: Container) -> set[str]:
    """The process ids of the balancer's workers: every process of the container but its main one (the
    master, whose parent is outside the container)."""
    rows = processes(container)
    pids = {pid for pid, _ in rows}
    return {pid for pid, parent in rows if parent in pids}


def main_pid(container: Container) -> str | None:
    """The host's process id of the container's main process (whose parent is outside it)."""
    rows = processes(container)
    pids = {pid for pid, _ in rows}
    return next((pid for pid, parent in rows if parent not in pids), None)


def catches_reload_now(container: Container, balancer: BalancerAdapter, proc: Path = Path("/proc")) -> bool | None:
    """Whether the balancer's main process catches its reload signal now; None when this host's /proc does not
    show that process (an engine on another host, or another PID namespace: its name must be the balancer's)."""
    pid = main_pid(container)
    try:
        status = (proc / str(pid) / "status").read_text() if pid is not None else ""
    except OSError:
        return None
    if re.search(rf"^Name:\s*{re.escape(balancer.version_command[0])}$", status, re.MULTILINE) is None:
        return None
    return balancer.catches_reload(status)


def await_reloadable(container: Container, balancer: BalancerAdapter, timeout: float = RELOAD_TIMEOUT_S) -> None:
    """Return once the balancer's main process catches its reload signal (at once for one that always does,
    or where it cannot be seen); StackError if it does not within `timeout`."""
    if not balancer.await_reloadable:
        return
    deadline = time.monotonic() + timeout
    while catches_reload_now(container, balancer) is False:
        if time.monotonic() > deadline:
            raise StackError(f"{balancer.name}'s main process did not take {balancer.reload_signal} within "
                             f"{timeout:g}s of the last reload (it re-executes itself after each)")
        time.sleep(POLL_S)


def reload(container: Container, balancer: BalancerAdapter, *, config: str | None = None,
           retire_within: float | None = None, signalling: AbstractContextManager[object] | None = None) -> None:
    """Write `config` (None: keep the file as it is), send the reload signal, and return once a new
    generation of workers runs; with `retire_within` (what the old workers were given to finish), also once
    every worker of the old generation is gone, which is when the connections they held were cut. Raises
    StackError with the balancer's own words when it refused the config (it then goes on with the old one).
    `signalling` is held while the signal is sent (the stack's membership lock)."""
    before = workers(container)
    since = int(time.time())
    if config is not None:
        write_config(container, balancer, config)
    await_reloadable(container, balancer)
    with signalling or nullcontext():
        container.kill(signal=balancer.reload_signal)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    now = workers(container)
    while not now - before:
        try:
            refused = balancer.rejected(container.logs(since=since).decode(errors="replace"))
        except docker.errors.APIError:
            refused = None
        if refused:
            raise StackError(f"{refused}; it goes on with the config it had")
        if time.monotonic() > deadline:
            raise StackError(f"{balancer.name} started no new worker within {RELOAD_TIMEOUT_S:g}s of "
                             f"{balancer.reload_signal} (workers before: {sorted(before)}, now: {sorted(now)})")
        time.sleep(POLL_S)
        now = workers(container)
    if retire_within is None:
        return
    deadline = time.monotonic() + retire_within + RETIRE_SLACK_S
    while before & now:
        if time.monotonic() > deadline:
            raise StackError(f"{balancer.name}'s old workers {sorted(before & now)} still run "
                             f"{retire_within + RETIRE_SLACK_S:g}s after the reload")
        time.sleep(POLL_S)
        now = workers(container)
