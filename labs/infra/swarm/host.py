"""What a local Swarm is on the host, named from its owner, and how it is found and removed: network
namespaces, links, engine processes and what a killed engine leaves (containerd, shims, containers, by
command line and by cgroup), mounts and directories. Nothing here touches the host's own engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from ...errors import SwarmError

ROOT_DIR = Path("/run/wslab-swarm")
CGROUP_ROOT = Path("/sys/fs/cgroup")
Progress = Callable[[str], None]


# -- names, pure ----------------------------------------------------------------------------------------

def subnet_octet(owner: str) -> int:
    """The third octet of the owner's segment 10.251.<k>.0/24 (owners sharing a machine differ)."""
    return 20 + zlib.crc32(owner.encode()) % 200


def segment_ns(owner: str) -> str:
    return f"wslab-{owner}-seg"


def node_ns(owner: str, index: int) -> str:
    return f"wslab-{owner}-node-{index}"


def host_link(owner: str) -> str:
    """The host end of the segment's veth (interface names hold at most 15 characters)."""
    return f"wsl{zlib.crc32(owner.encode()) % 10**8:08d}"


def swarm_dir(owner: str) -> Path:
    return ROOT_DIR / owner


def cgroup_parent(owner: str, index: int) -> str:
    return f"wslab-{owner}-node-{index}"


def node_index(name: str) -> int:
    return int(name.removeprefix("node-"))


# -- shell ------------------------------------------------------------------------------------------------

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SwarmError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def netns() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes_mentioning(text: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != os.getpid() and text in _cmdline(int(p.name))]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_engines(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM (the engine stops its containers), then SIGKILL whatever still runs after `grace`."""
    _kill(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill([p for p in pids if _alive(p)], signal.SIGKILL)


def _cgroup_dirs(owner: str, index: int | None = None) -> list[Path]:
    """The nodes' cgroup parents (cgroup v1: one per controller), of one node or all."""
    if not CGROUP_ROOT.is_dir():
        return []
    pattern = cgroup_parent(owner, index) if index is not None else f"wslab-{owner}-node-*"
    return sorted((d for ctl in CGROUP_ROOT.iterdir() if ctl.is_dir() and not ctl.is_symlink()
                   for d in ctl.glob(pattern)), key=str)


def _cgroup_pids(dirs: list[Path]) -> list[int]:
    pids: set[int] = set()
    for d in dirs:
        for procs in d.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except OSError:
                pass
    return sorted(pids)


def _remove_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]:
            try:
                sub.rmdir()
            except OSError:
                pass


def _unmount_under(path: Path) -> None:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def node_processes(owner: str, index: int) -> list[int]:
    """Every process of one node: its engine, containerd, shims (by command line), containers (by cgroup)."""
    mark = str(swarm_dir(owner) / f"node-{index}") + "/"
    return _processes_mentioning(mark) + _cgroup_pids(_cgroup_dirs(owner, index))


def kill_all(pids: list[int], timeout: float = 10.0) -> None:
    """SIGKILL, and wait until they are gone."""
    _kill(pids, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def leftovers(owner: str) -> list[str]:
    """What of the owner's local Swarm exists: namespaces, the host link, processes, cgroups, the
    directory. Empty when nothing is left."""
    found = [ns for ns in netns() if ns.startswith(f"wslab-{owner}-")]
    if ip("link", "show", host_link(owner), check=False).returncode == 0:
        found.append(f"link {host_link(owner)}")
    found += [f"pid {p}" for p in _processes_mentioning(str(swarm_dir(owner)) + "/")]
    found += [str(d) for d in _cgroup_dirs(owner)]
    if swarm_dir(owner).exists():
        found.append(str(swarm_dir(owner)))
    return found


def remove(owner: str, recorded: list[int], *, progress: Progress = lambda line: None) -> list[str]:
    """Remove the owner's local Swarm, whatever is left of it (`recorded`: its engines' PIDs as recorded,
    if any; a killed `up` or run may have recorded none): returns what was found."""
    found = leftovers(owner)
    if not found:
        return []
    t0 = time.monotonic()
    mark = str(swarm_dir(owner)) + "/"
    engines = [pid for pid in recorded if pid and mark in _cmdline(pid)]
    engines += [p for p in _processes_mentioning(mark) if "dockerd" in _cmdline(p) and p not in engines]
    stop_engines(engines)
    groups = _cgroup_dirs(owner)
    # what a SIGKILLed engine leaves: containerd, its shims, and the containers' processes
    _kill(_processes_mentioning(mark) + _cgroup_pids(groups), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (_processes_mentioning(mark) or _cgroup_pids(groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    _remove_cgroups(groups)
    for ns in netns():
        if ns.startswith(f"wslab-{owner}-"):
            ip("netns", "delete", ns, check=False)
    ip("link", "delete", host_link(owner), check=False)
    d = swarm_dir(owner)
    if d.exists():
        _unmount_under(d)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)], capture_output=True)
    progress(f"local Swarm of {owner} removed in {time.monotonic() - t0:.1f}s")
    return found
