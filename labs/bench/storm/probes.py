"""What the storm bench reads beside the clients: Redis's command counts through a meter container on the
back network, and every process's CPU (the load processes, the containers, the engine's own processes, the
kernel's network work) while the wave runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ...infra.stack import Backend
from ...infra.usage import TICK
from ...settings import LABEL
from ..common import Started
from ..connections.load import cpu_snapshot

METER = "meter"
METER_EVERY_S = 0.25
CPU_EVERY_S = 0.5


def meter_backend(image: str, every: float = METER_EVERY_S) -> Backend:
    """A container beside Redis on the back network that prints Redis's clock (TIME) and its per-command call
    counts (INFO commandstats) every `every` s: the host cannot reach Redis, and no exec runs in a container
    the teardown pauses."""
    sample = "printf 'TIME\\nINFO commandstats\\n' | redis-cli -h redis -p 6379"
    script = (f"until redis-cli -h redis -p 6379 PING >/dev/null 2>&1; do sleep 0.1; done; echo meter ready; "
              f"while :; do {sample}; sleep {every:g}; done")
    return Backend(METER, image, ("sh", "-c", script), b"meter ready")


def engine_pids(pidfile: Path = Path("/var/run/docker.pid")) -> dict[str, list[int]]:
    """The engine's own processes: the dockerd of `pidfile` and the containerd it started (a kill, a start and
    every network change is their work). Other engines on the machine (a local Swarm's) are not counted."""
    try:
        dockerd = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return {}
    containerd = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if name == "containerd" and int(rest[1]) == dockerd:
                containerd.append(int(entry.name))
    return {"dockerd": [dockerd], "containerd": containerd}


def softirq_seconds() -> float:
    """CPU seconds the host's cores spent in software interrupts (the kernel's network processing: bridge,
    conntrack, TCP), which no process's own time includes (/proc/stat)."""
    return int(Path("/proc/stat").read_text().split()[7]) / TICK


def others_running(bench: Started, run_id: str) -> int:
    """Containers running on the engine that are not this run's: on a shared machine, others' work."""
    return sum(1 for c in bench.client.containers.list(sparse=True)
               if c.attrs.get("Labels", {}).get(LABEL) != run_id)


class CpuSampler(threading.Thread):
    """Reads every group's cumulative CPU seconds every CPU_EVERY_S until stopped (from /proc and cgroups)."""

    def __init__(self, groups: dict[str, list[int]], containers: dict[str, list[str]]) -> None:
        super().__init__(daemon=True)
        self.groups, self.containers = groups, containers
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.done = threading.Event()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), {**cpu_snapshot(self.groups, self.containers),
                                                "softirq": softirq_seconds()}))

    def run(self) -> None:
        while True:
            self.sample()
            if self.done.wait(CPU_EVERY_S):
                self.sample()
                return
