"""What the host's processes and the lab's containers have used so far, read from /proc and the cgroups:
cheap enough to read at the edges of every measurement window (no Docker API call, no thread).

Two readings over a window give the cores used: (after - before) / seconds.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psutil

TICK = os.sysconf("SC_CLK_TCK")


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, summed over its cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _cgroup_cpu(container_id: str, v1_file: str, v2_key: str) -> float | None:
    """CPU seconds from a container's cgroup: v1 cpuacct's `v1_file` (ns), or v2 cpu.stat's `v2_key` (µs)."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{container_id}/{v1_file}", 1e-9),
                        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", 1e-6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            text = dict(line.split() for line in text.splitlines()).get(v2_key, "0")
        return int(text) * scale
    return None


def container_cpu(container_id: str) -> float | None:
    """CPU seconds a container has used, from its cgroup (v1 cpuacct, or v2 cpu.stat); None if unreadable."""
    return _cgroup_cpu(container_id, "cpuacct.usage", "usage_usec")


def container_cpu_system(container_id: str) -> float | None:
    """CPU seconds a container has spent in the kernel (system calls, its sockets' TCP work done on its
    behalf), from its cgroup (v1 cpuacct.usage_sys, or v2 cpu.stat system_usec); None if unreadable."""
    return _cgroup_cpu(container_id, "cpuacct.usage_sys", "system_usec")


def docker_proxies(host_ports: list[int]) -> dict[str, int]:
    """The docker-proxy process (its pid) behind each published host port; a port without one is absent."""
    wanted = {str(p) for p in host_ports}
    out: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or not args[0].endswith(b"docker-proxy") or b"-host-port" not in args:
            continue
        port = args[args.index(b"-host-port") + 1].decode()
        if port in wanted:
            out[port] = int(entry.name)
    return out


def describe_machine(engine: str) -> dict[str, Any]:
    """The machine a benchmark ran on: cores, platform, Python, Docker engine version, memory."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "docker": engine, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}
