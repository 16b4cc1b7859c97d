"""A load session: a load driver puts `users` users in one room through nginx, then steps the offered rate:
`step(rate, seconds)` as often as the caller wants, each counted apart from the users' tallies.

Two drivers speak the same files, frames and tallies: locust (headless, a master and `processes` worker
processes; users.py) and Node with `ws` (users.mjs: a parent and `processes` workers, ~10x less CPU per
delivery, for benches where the generator must not be what saturates). The driver runs in a session of its
own, started in a critical section, and `Session.__exit__` ends it on every exit path (the users leave,
SIGTERM to its parent, SIGKILL to whatever is left of its process group): no load worker outlives the
session. The CPU the generator used is read from its processes (/proc), the
containers' from `cpu_probe` (cumulative CPU seconds per container), and the machine's, over the same
window: the step's sending window.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .. import signals
from ..errors import LabError
from ..infra.usage import host_cpu, process_cpu
from .tally import StepCounts, UserCounts, add_up

USERS_FILE = Path(__file__).with_name("users.py")
NODE_USERS_FILE = Path(__file__).with_name("users.mjs")
DRIVERS = ("locust", "node")
CpuProbe = Callable[[], dict[str, float]]
#: a step whose generator used more than this share of one core in any of its processes was bound by it
GENERATOR_BOUND = 0.85


class LoadError(LabError):
    pass


@dataclass(frozen=True)
class LoadSpec:
    """The generator of a session: how many users, in how many worker processes of which driver, and the
    address they connect to (nginx's published port on 127.0.0.1, or its address on the front network)."""

    users: int
    processes: int = 1
    payload: int = 0
    user_class: str = "WebSocketUser"
    join_timeout: float = 30.0
    drain: float = 5.0
    driver: str = "locust"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not 2 <= self.users <= 5000:
            raise LoadError(f"a load step needs 2..5000 users, got {self.users}")
        if not 1 <= self.processes <= 16:
            raise LoadError(f"processes must be 1..16, got {self.processes}")
        if self.user_class not in {"WebSocketUser", "SocketIOUser"}:
            raise LoadError(f"unknown load user {self.user_class!r} (WebSocketUser or SocketIOUser)")
        if self.driver not in DRIVERS:
            raise LoadError(f"unknown load driver {self.driver!r} ({' or '.join(DRIVERS)})")
        if self.driver == "node" and self.user_class != "WebSocketUser":
            raise LoadError("the node load driver speaks the lab's WebSocket protocol only (user WebSocketUser)")
        try:
            if ipaddress.ip_address(self.host).version != 4:
                raise ValueError
        except ValueError:
            raise LoadError(f"load host {self.host!r} is not an IPv4 address") from None


def check_step(rate: float, seconds: float) -> None:
    if not 0 < rate <= 100_000 or not 0.5 <= seconds <= 600:
        raise LoadError(f"rate must be in (0, 100000] msg/s and seconds 0.5..600, got {rate:g}, {seconds:g}")


@dataclass
class StepResult:
    spec: LoadSpec
    #: offered messages per second, all users together, and for how long
    rate: float
    seconds: float
    counts: StepCounts
    #: the sending window's wall seconds, over which CPU is read
    window_s: float
    #: CPU cores used over the window: every container, and "generator" (all the driver's processes)
    cpu: dict[str, float] = field(default_factory=dict)
    #: the driver's busiest process's share of one core
    generator_peak: float = 0.0
    #: cores the whole machine was busy over the window (processes, kernel, anything else)
    host_cpu: float = 0.0
    locust: dict[str, Any] = field(default_factory=dict)

    @property
    def sent_per_s(self) -> float:
        return self.counts.sent / self.seconds

    @property
    def delivered_per_s(self) -> float:
        return self.counts.delivered / self.seconds

    @property
    def generator_bound(self) -> bool:
        """The generator, not the lab, set the pace: a driver process near a full core, or sends that went
        out late or short of the offered count."""
        short = self.counts.sent < 0.97 * self.rate * self.seconds
        return self.generator_peak > GENERATOR_BOUND or short or self.counts.late_sends > 0.01 * max(1, self.counts.sent)

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {"users": self.spec.users, "processes": self.spec.processes, "offered": self.rate,
                "seconds": self.seconds, "sent": c.sent, "acked": c.acked, "sent_per_s": self.sent_per_s,
                "owed": c.owed, "delivered": c.delivered, "delivered_per_s": self.delivered_per_s, "lost": c.lost,
                "duplicated": c.duplicated, "unexpected": c.unexpected, "joined": c.joined, "dropped": c.dropped,
                "late_sends": c.late_sends, "stale": c.stale, "p50_ms": c.percentile_ms(50),
                "p90_ms": c.percentile_ms(90), "p99_ms": c.percentile_ms(99), "max_ms": c.max_ms,
                "window_s": self.window_s, "cpu": self.cpu, "host_cpu": self.host_cpu,
                "machine_cores": os.cpu_count(), "generator_peak": self.generator_peak,
                "generator_bound": self.generator_bound, "locust": self.locust}


class Session:
    """The driver up with every user in the room; then `step(rate, seconds)` as often as wanted. Use as
    `with Session(...) as load:`; leaving it ends the users and kills the driver's process group."""

    def __init__(self, port: int, spec: LoadSpec, out_dir: Path, *, broker: bool, room: str = "load",
                 cpu_probe: CpuProbe = dict, max_seconds: float = 3600) -> None:
        self.port, self.spec, self.dir, self.broker, self.room = port, spec, out_dir, broker, room
        self.cpu_probe = cpu_probe
        self.max_seconds = max_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / f"{spec.driver}.log"
        self.steps = 0
        self.locust: dict[str, Any] = {}

    def __enter__(self) -> Session:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        try:
            (self.dir / "end").touch()  # users close their connections at their next poll
            if self.spec.driver == "locust":
                # each worker's next stats report (every 3 s) carries its last samples to the master
                _await(lambda: _count(self.dir / "final") >= self.spec.processes, self.proc, 5.0,
                       "the workers' final stats", self.log)
        except LoadError:
            pass  # locust's own figures may then miss the last samples; the users' tallies do not
        finally:
            _stop(self.proc)  # locust writes its CSV on SIGTERM; what is left gets SIGKILL
            self.locust = _locust_stats(self.dir / "locust_stats.csv")

    def command(self) -> list[str]:
        spec = self.spec
        if spec.driver == "node":
            return ["node", str(NODE_USERS_FILE), "--dir", str(self.dir), "--host", spec.host, "--port",
                    str(self.port), "--room", self.room, "--users", str(spec.users), "--processes",
                    str(spec.processes), "--payload", str(spec.payload), "--drain", str(spec.drain)]
        return [sys.executable, "-m", "locust", "-f", str(USERS_FILE), "--headless", "--processes",
                str(spec.processes), "-u", str(spec.users), "-r", str(min(spec.users, 500)),
                "-t", f"{int(self.max_seconds)}s", "--csv", str(self.dir / "locust"), "--only-summary",
                "--loglevel", "WARNING", "--exit-code-on-error", "0", "--lab-dir", str(self.dir),
                "--lab-host", spec.host, "--lab-port", str(self.port), "--lab-room", self.room,
                "--lab-payload", str(spec.payload), "--lab-drain", str(spec.drain), spec.user_class]

    def start(self) -> None:
        spec = self.spec
        self.dir.mkdir(parents=True, exist_ok=False)
        # a critical section: a Ctrl-C waits until the handle is ours, so `__exit__` can kill the session
        with open(self.log, "wb") as log, signals.deferred():
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _await(lambda: _count(self.dir / "joined") + _count(self.dir / "users" / "0", ".json") >= spec.users,
               self.proc, spec.join_timeout, f"{spec.users} users to join", self.log)
        self.tree = _tree(self.proc.pid)

    def step(self, rate: float, seconds: float) -> StepResult:
        check_step(rate, seconds)
        assert self.proc is not None
        self.steps += 1
        n, joined = self.steps, _count(self.dir / "joined")
        start = time.monotonic() + 0.2
        go = self.dir / f"go-{n}.json"
        go.with_suffix(".partial").write_text(json.dumps({"start": start, "stop": start + seconds,
                                                          "rate": rate / self.spec.users}))
        go.with_suffix(".partial").rename(go)
        # CPU is read over the sending window itself, [start, stop]: the offered load and nothing else
        _until(start)
        cpu0, gen0, host0, t0 = self.cpu_probe(), _cpu(self.tree), host_cpu()[0], time.monotonic()
        _until(start + seconds)
        cpu1, gen1, host1, t1 = self.cpu_probe(), _cpu(self.tree), host_cpu()[0], time.monotonic()
        reports = self.dir / "users" / str(n)
        _await(lambda: _count(reports, ".json") >= joined, self.proc, self.spec.drain + 10,
               f"every user's report of step {n}", self.log)
        failed = sorted((self.dir / "users" / "0").glob("*.json")) if (self.dir / "users" / "0").exists() else []
        users = [UserCounts.from_dict(json.loads(p.read_text())) for p in sorted(reports.glob("*.json")) + failed]
        counts = add_up(users, expected_users=self.spec.users, broker=self.broker)
        window = t1 - t0
        cpu = {name: (cpu1[name] - cpu0[name]) / window for name in cpu1 if name in cpu0}
        cpu["generator"] = sum(gen1.get(pid, 0.0) - gen0.get(pid, 0.0) for pid in gen1) / window
        peak = max((gen1[pid] - gen0.get(pid, 0.0) for pid in gen1), default=0.0) / window
        # every core's busy time: these processes, the kernel's networking, and anything else on the machine
        host = (host1 - host0) / window
        return StepResult(self.spec, rate, seconds, counts, window, cpu, peak, host_cpu=host)


def run_step(port: int, spec: LoadSpec, rate: float, seconds: float, out_dir: Path, *, broker: bool,
             room: str = "load", cpu_probe: CpuProbe = dict) -> StepResult:
    """One step in a session of its own; its `locust` holds locust's own figures for it."""
    with Session(port, spec, out_dir, broker=broker, room=room, cpu_probe=cpu_probe) as load:
        result = load.step(rate, seconds)
    result.locust = load.locust
    return result


def _await(done: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            raise LoadError(f"the load driver exited with code {proc.returncode} before {what}; see {log}")
        if time.monotonic() > deadline:
            raise LoadError(f"no {what} after {timeout:.0f} s; see {log}")
        time.sleep(0.02)


def _count(directory: Path, suffix: str = "") -> int:
    try:
        return sum(1 for p in directory.iterdir() if p.name.endswith(suffix))
    except FileNotFoundError:
        return 0


def _until(moment: float) -> None:
    """Wait for a moment on the monotonic clock (a measurement window's edge, not a readiness guess)."""
    time.sleep(max(0.0, moment - time.monotonic()))


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
    return {p.pid: process_cpu(p.pid) for p in processes}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the driver's parent alone (locust's master stops its workers, gathers their last figures and
    writes its CSV), then SIGKILL whatever is left of the session: no load process outlives it."""
    try:
        proc.terminate()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _locust_stats(path: Path) -> dict[str, Any]:
    """locust's own figures for "deliver" and "ack" (its CSV), beside the lab's HdrHistogram ones."""
    if not path.exists():
        return {}
    out = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("Name") in {"deliver", "ack"}:
                out[row["Name"]] = {"count": int(row["Request Count"]), "p50_ms": _num(row.get("50%")),
                                    "p99_ms": _num(row.get("99%")), "max_ms": _num(row.get("Max Response Time"))}
    return out


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None
