"""What is up: one small JSON file per live stack, build/live/<name>.json, so that `down`, `fault` and
`heal` (other processes) find the stack `up` keeps running, and a second `up` is refused.

`up` claims the file before it starts anything (created exclusively: two `up`s cannot both win), adds the
run id once the stack's spec exists and the port once it is ready, and removes the file when its stack is
gone. `fault` and `heal` record the faults they applied there, so `heal` can undo them and the live view
can show them; `scale`, `deploy` and `reload` record the replicas serving after each step, so every other
command and the view see the replica set as it is. Every change is a whole-file replace under a lock;
readers never see half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..settings import BUILD_DIR

LIVE_DIR = BUILD_DIR / "live"
DEFAULT_NAME = "default"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class AppliedFault:
    """A fault `fault` applied and `heal` has not undone; `saved` is what the heal needs (e.g. a Redis
    setting to restore)."""

    kind: str
    target: str
    applied_at: float
    saved: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveState:
    name: str
    scenario: str
    pid: int
    #: the process start time (/proc/<pid>/stat field 22): a pid reused by another process is not `up`
    pid_start: str
    replicas: int
    broker: str
    app: str
    run_id: str = ""
    port: int = 0
    #: where nginx's port is published: this host, or a Swarm node's address
    host: str = "127.0.0.1"
    faults: tuple[AppliedFault, ...] = ()
    #: what `up` was given (a scenario's name, or its file's absolute path): a topology change renders the
    #: balancer's config and makes replicas from it again
    source: str = ""
    balancer: str = "nginx"
    #: WSLAB_OWNER of `up`: every container of the run carries it (`make clean` and the tests find them by it)
    owner: str = ""
    #: the images `up` ran, by role (app, redis, nginx, node, nats, haproxy; "" for one it had not)
    images: dict[str, str] = field(default_factory=dict)
    #: the replicas in the balancer's upstream now, in order (empty: app-1..`replicas`, as `up` started them)
    serving: tuple[str, ...] = ()
    #: the highest replica number used so far: a scale-out names the next ones (numbers are never reused)
    highest: int = 0
    #: nginx's worker_shutdown_timeout in its config now (seconds; None: none, old workers live on)
    shutdown_timeout: float | None = None
    #: the topology change under way ("" when none), and what the last one did
    change: str = ""
    changed: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.run_id and self.port)

    @property
    def replica_names(self) -> tuple[str, ...]:
        return self.serving or tuple(f"app-{i}" for i in range(1, self.replicas + 1))

    @property
    def last_number(self) -> int:
        return max([self.highest, self.replicas, *(int(n.removeprefix("app-")) for n in self.serving)])

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(f"--name {name!r} must match [a-z0-9][a-z0-9-]{{0,39}}; give a short lowercase name")
    return name


def path_for(name: str, directory: Path | None = None) -> Path:
    return (directory or LIVE_DIR) / f"{check_name(name)}.json"


def encode(state: LiveState) -> str:
    return json.dumps(asdict(state), indent=1) + "\n"


def decode(text: str) -> LiveState:
    """A state file's text as a LiveState; a file that is not one is a LabError naming what to do."""
    try:
        data: dict[str, Any] = json.loads(text)
        faults = tuple(AppliedFault(**f) for f in data.pop("faults", []))
        serving = tuple(data.pop("serving", ()))
        return LiveState(**data, faults=faults, serving=serving)
    except (ValueError, TypeError, AttributeError) as exc:
        raise LabError(f"the live stack's state file is damaged ({exc}); run `python -m labs down`") from None


def read(name: str, directory: Path | None = None) -> LiveState | None:
    """The state of the stack called `name`, or None when nothing is up under that name."""
    try:
        return decode(path_for(name, directory).read_text())
    except FileNotFoundError:
        return None


def claim(state: LiveState, directory: Path | None = None) -> None:
    """Write the state of a stack about to start; refuse (one line) when one of that name is up."""
    path = path_for(state.name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise LabError(already_up(read(state.name, directory))) from None
    with os.fdopen(fd, "w") as f:
        f.write(encode(state))


def already_up(state: LiveState | None) -> str:
    if state is None:  # removed between the two looks
        return "a stack was being removed; run the command again"
    flag = "" if state.name == DEFAULT_NAME else f" --name {state.name}"
    where = f" at {state.url()}" if state.ready else " (starting)"
    if not alive(state.pid, state.pid_start):
        return (f"stack {state.name!r} ({state.scenario}) is recorded as up but its process {state.pid} is gone; "
                f"run `python -m labs down{flag}` to remove what it left")
    return (f"stack {state.name!r} ({state.scenario}, run {state.run_id or '-'}) is already up{where}, pid "
            f"{state.pid}; run `python -m labs down{flag}` first, or give another --name")


@contextmanager
def updating(name: str, directory: Path | None = None) -> Iterator[list[LiveState]]:
    """Read-modify-write under a lock: the body gets [state] and may replace item 0; it is written back
    (atomically) if changed. Raises LabError when nothing is up."""
    path = path_for(name, directory)
    if not path.exists():
        raise LabError(nothing_up(name))
    with open(path.parent / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read(name, directory)
        if current is None:
            raise LabError(nothing_up(name))
        box = [current]
        yield box
        if box[0] != current:
            save(box[0], directory)


def save(state: LiveState, directory: Path | None = None) -> bool:
    """Replace the state file with `state` (whole: readers never see half a file), by the holder of its lock
    (`updating`) between the steps of a change; False, and nothing written, when the file is gone (`down`
    removed the stack meanwhile: no state is written back for it)."""
    path = path_for(state.name, directory)
    if not path.exists():
        return False
    partial = path.with_suffix(".partial")
    partial.write_text(encode(state))
    partial.rename(path)
    return True


def nothing_up(name: str) -> str:
    flag = "" if name == DEFAULT_NAME else f" --name {name}"
    return f"nothing is up (no stack named {name!r}); start one with `python -m labs up SCENARIO{flag}`"


def release(name: str, pid: int, directory: Path | None = None) -> None:
    """Remove the state file if it is still this process's (a `down` may have removed it already)."""
    try:
        state = read(name, directory)
    except LabError:
        state = None
    if state is not None and state.pid == pid:
        path_for(name, directory).unlink(missing_ok=True)


def forget(name: str, directory: Path | None = None) -> None:
    path_for(name, directory).unlink(missing_ok=True)


def with_fault(state: LiveState, fault: AppliedFault) -> LiveState:
    return replace(state, faults=state.faults + (fault,))


def process_start(pid: int) -> str:
    """A running process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); "" when it
    is gone or has exited (a zombie: its parent has not collected it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()  # fields after "(comm)": state is field 3, start time field 22
    return "" if fields[0] in {"Z", "X", "x"} else fields[19]


def alive(pid: int, start: str) -> bool:
    return bool(start) and process_start(pid) == start
