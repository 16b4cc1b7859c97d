"""Find a Docker engine, or install and start one on a Debian-family host where we are root."""

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import docker
import requests

from ..errors import EngineError, LabError
from ..settings import BUILD_DIR

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERD_LOG = BUILD_DIR / "dockerd.log"
#: dockerd as the lab starts it. Without the userland proxy, the host's connections to a port published on
#: 127.0.0.1 are carried by netfilter (DNAT) instead of one docker-proxy process per port, which holds 6 files
#: per connection and stops proxying near 3,300 connections under a 20,000-file limit
#: (docs/findings/defaults.md). An engine that already runs is used as it is.
DOCKERD = ("dockerd", "--userland-proxy=false")

_TRANSIENT = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
#: what a Docker call raises when the engine has not answered it within the client's timeout (60 s by default)
NO_ANSWER = requests.exceptions.Timeout


def wedged(containers: str) -> EngineError:
    """One line for containers the engine no longer answers for: Docker 20.10 wedges a container paused with
    an exec in flight, and every later call on it (even `docker inspect`) hangs until dockerd restarts."""
    return EngineError(
        f"container {containers} is wedged: the Docker engine does not answer calls on it; try "
        f"`docker unpause {containers}`, and if that hangs too restart dockerd (`systemctl restart docker`, or "
        "for the dockerd the lab started `kill $(cat /var/run/docker.pid)`, then `make images`), then "
        "`python -m labs clean`")


def no_answer(exc: BaseException) -> EngineError | None:
    """A Docker call the engine never answered, in one line (naming the container when the call was about
    one); None for any other exception."""
    if not isinstance(exc, NO_ANSWER):
        return None
    request = exc.request
    url, method = getattr(request, "url", None) or "", getattr(request, "method", None) or "a call"
    about = re.search(r"/containers/([^/?]+)/", url)
    if about:
        return wedged(about.group(1)[:12] if re.fullmatch(r"[0-9a-f]{64}", about.group(1)) else about.group(1))
    path = re.sub(r"^[a-z+]+://[^/]*(/v[0-9.]+)?", "", url) or "?"
    return EngineError(f"the Docker engine did not answer {method} {path} ({exc}); restart dockerd "
                       "(`systemctl restart docker`), then `python -m labs clean`")


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release file, quotes removed."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip().strip("\"'") for key, value in pairs}


def read_os_release() -> dict[str, str]:
    """This host's /etc/os-release, or nothing when it has none."""
    try:
        return parse_os_release(Path("/etc/os-release").read_text())
    except OSError:
        return {}


def debian_root() -> bool:
    """True when the host is Debian-family and we are root, so apt-get and daemons are ours to run."""
    release = read_os_release()
    ids = f"{release.get('ID', '')} {release.get('ID_LIKE', '')}".split()
    return "debian" in ids and os.geteuid() == 0


def apt_install(
    packages: Sequence[str], *, progress: Callable[[str], None], error: type[LabError] = EngineError
) -> None:
    """Install packages with apt-get; `apt-get update` may fail on an unreachable third-party source, the install may not."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    progress(f"installing {' '.join(packages)} with apt-get …")
    subprocess.run(["apt-get", "update"], env=env, capture_output=True)
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        tail = " / ".join(done.stderr.strip().splitlines()[-3:])
        raise error(f"apt-get install {' '.join(packages)} failed (exit {done.returncode}): {tail}")


def connect_existing() -> docker.DockerClient | None:
    try:
        client = docker.from_env()
        client.ping()
        return client
    except _TRANSIENT:
        return None


def userland_proxy_flag(cmdline: Sequence[str], daemon_json: dict[str, object]) -> bool:
    """Whether a dockerd started with `cmdline` and configured by `daemon_json` carries published ports
    through docker-proxy (its default) rather than netfilter. Pure."""
    for arg in reversed(cmdline):
        if arg.startswith("--userland-proxy="):
            return arg.split("=", 1)[1].lower() not in ("false", "0")
    return daemon_json.get("userland-proxy") is not False


def userland_proxy() -> bool | None:
    """Whether the local dockerd uses its userland proxy; None when no local dockerd is found (a remote
    engine, another user's process)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if args and Path(args[0]).name == "dockerd":
            try:
                config = json.loads(Path("/etc/docker/daemon.json").read_text())
            except (OSError, ValueError):
                config = {}
            return userland_proxy_flag(args, config if isinstance(config, dict) else {})
    return None


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_engine(*, progress: Callable[[str], None], start_timeout: float = 60.0) -> docker.DockerClient:
    """Return a client of an answering engine; start (and if needed install) a local dockerd when we may."""
    client = connect_existing()
    if client is not None:
        return client
    url = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    if url != DEFAULT_SOCKET or not debian_root():
        raise EngineError(
            f"no Docker engine answers at {url}; install Docker "
            "(https://docs.docker.com/engine/install/) and start it, then retry"
        )
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"], progress=progress)
        if shutil.which("dockerd") is None:
            raise EngineError("docker.io is installed but dockerd is not on PATH")

    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    progress(f"starting dockerd (log: {DOCKERD_LOG}) …")
    started = time.monotonic()
    with open(DOCKERD_LOG, "ab") as log:
        proc = subprocess.Popen(
            list(DOCKERD), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = started + start_timeout
    while time.monotonic() < deadline:
        client = connect_existing()
        if client is not None:
            progress(f"dockerd answers after {time.monotonic() - started:.1f} s")
            return client
        if proc.poll() is not None:
            raise EngineError(f"dockerd exited with code {proc.returncode}; see {DOCKERD_LOG}: {_log_tail(DOCKERD_LOG)}")
        time.sleep(0.5)
    raise EngineError(f"dockerd did not answer within {start_timeout:.0f} s; see {DOCKERD_LOG}: {_log_tail(DOCKERD_LOG)}")
