"""The load balancer's config, written and reloaded in place: the one way the lab changes what a running
balancer does.

No `docker exec`: a teardown pauses containers, and Docker 20.10 wedges a container paused with an exec
in flight. The config goes in with the Docker API's archive upload (`put_archive`), the reload is a signal
to the balancer's master, PID 1 in its container (the Docker API's kill with a signal), and whether it
happened is read from the process list the engine reads on the host (`docker top`): a worker that was not
there before is the new generation; the balancer's own words in its log say why a reload was refused.

What differs from one balancer to another is data (`Balancer`): where its config lives, which signal
reloads it, how its processes are titled.
"""

from __future__ import annotations

import io
import tarfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import docker.errors
from docker.models.containers import Container

from ..errors import StackError

#: the lab's nginx config inside its container (the image's own config is never used)
NGINX_CONF = "/etc/wslab/nginx.conf"
#: how long a reload may take to start its new workers
RELOAD_TIMEOUT_S = 10.0
#: beyond the shutdown timeout, how long the old workers may take to be gone
RETIRE_SLACK_S = 10.0
POLL_S = 0.02


@dataclass(frozen=True)
class Balancer:
    """How one kind of load balancer is reconfigured without exec."""

    #: its container's role name in the stack
    container: str
    config_path: str
    #: the signal its master reloads its config on
    reload_signal: str
    #: the start of a current worker's title in the process list, and of a worker of an older generation
    #: still finishing its connections
    worker_title: str
    retiring_title: str
    #: what its log says when it refused a config
    refused_marker: str


NGINX = Balancer("nginx", NGINX_CONF, "SIGHUP", "nginx: worker process", "nginx: worker process is shutting down",
                 "[emerg]")


def archive(path: str, text: str) -> bytes:
    """A tar holding one file, `path` (absolute), with `text`: what `put_archive("/", ...)` unpacks."""
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_config(container: Container, balancer: Balancer, text: str) -> None:
    container.put_archive("/", archive(balancer.config_path, text))


def workers(container: Container, balancer: Balancer) -> tuple[set[str], set[str]]:
    """The process ids of its current workers and of its retiring ones (older generations)."""
    top = container.top()
    titles = top.get("Titles") or []
    pid, cmd = titles.index("PID"), titles.index("CMD")
    current: set[str] = set()
    retiring: set[str] = set()
    for row in top.get("Processes") or []:
        title = row[cmd]
        if title.startswith(balancer.retiring_title):
            retiring.add(row[pid])
        elif title.startswith(balancer.worker_title):
            current.add(row[pid])
    return current, retiring


def reload(container: Container, balancer: Balancer, *, config: str | None = None,
           retire_within: float | None = None, signalling: AbstractContextManager[object] | None = None) -> None:
    """Write `config` (None: keep the file as it is), signal the master, and return once a new generation of
    workers runs; with `retire_within` (the shutdown timeout in force), also once every older worker is gone,
    which is when the connections they held were cut. Raises StackError with the balancer's own words when
    it refused the config (it then goes on with the old one). `signalling` is held while the signal is sent
    (the stack's membership lock: no container leaves a network meanwhile)."""
    before, _ = workers(container, balancer)
    since = int(time.time())
    if config is not None:
        write_config(container, balancer, config)
    with signalling or nullcontext():
        container.kill(signal=balancer.reload_signal)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:
        current, retiring = workers(container, balancer)
        if current - before:
            break
        refused = _refused(container, balancer, since)
        if refused:
            raise StackError(f"{balancer.container} refused the new config and kept the old one:\n{refused}")
        if time.monotonic() > deadline:
            raise StackError(f"{balancer.container} started no new worker within {RELOAD_TIMEOUT_S:g}s of "
                             f"{balancer.reload_signal} (workers before: {sorted(before)}, now: {sorted(current)})")
        time.sleep(POLL_S)
    if retire_within is None:
        return
    # the old generation: its workers are gone once none of them is listed, retiring or not (a worker may
    # still carry its old title for a moment after the new ones start)
    deadline = time.monotonic() + retire_within + RETIRE_SLACK_S
    while before & (current | retiring):
        if time.monotonic() > deadline:
            raise StackError(f"{balancer.container}'s old workers {sorted(before & (current | retiring))} still "
                             f"run {retire_within + RETIRE_SLACK_S:g}s after the reload")
        time.sleep(POLL_S)
        current, retiring = workers(container, balancer)


def _refused(container: Container, balancer: Balancer, since: int) -> str:
    try:
        lines = container.logs(since=since).decode(errors="replace").splitlines()
    except docker.errors.APIError:
        return ""
    return "\n".join(line for line in lines if balancer.refused_marker in line)
