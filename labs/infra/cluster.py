"""A local Docker Swarm on this machine: N extra engines, each in its own network namespace, joined into
one Swarm, with the lab's images loaded into each.

Layout (root only; names derive from WSLAB_OWNER, so `clean` finds a killed run's leftovers without
any record):
- a namespace `wslab-<owner>-seg` holding one bridge: the segment every node advertises its address on
  (a bridge in the host namespace would meet the host's FORWARD policy, DROP here);
- per node a namespace `wslab-<owner>-node-<i>`, a veth into the bridge, address 10.251.<k>.<i>/24,
  and a `dockerd` started through `nsenter --net=` (not `ip netns exec`, which remounts /sys and hides the
  cgroups) in its own UTS namespace (its hostname is the node's name), with its own data root, exec root,
  socket, pidfile, config file and cgroup parent, `--bridge none --iptables=false`, and
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (else each task first waits ~20 s on registry DNS);
- a veth from the host namespace into the segment (10.251.<k>.254): the host reaches the nodes, and
  nginx's port published on its node, through it.

The host's own engine is never touched. `down` stops every engine by PID (SIGTERM, then SIGKILL), kills
what a SIGKILLed engine left (shims and container processes: by cmdline and by cgroup), unmounts, and
removes namespaces, links, cgroups and directories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import docker
import docker.errors

from .. import signals
from ..errors import LabError
from ..settings import OWNER

ROOT_DIR = Path("/run/wslab-cluster")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_NODES = 9
Progress = Callable[[str], None]
T = TypeVar("T")


class ClusterError(LabError):
    """The local cluster cannot be built or found."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    socket: str
    pid: int = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class Cluster:
    """What `up` built, recorded in `<dir>/cluster.json` so that `down`, `clean` and runs find it."""

    owner: str
    host_address: str
    nodes: tuple[Node, ...]
    heartbeat_s: float = 2.0

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r} in the cluster (nodes: {', '.join(n.name for n in self.nodes)})")


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


def cluster_dir(owner: str) -> Path:
    return ROOT_DIR / owner


def cgroup_parent(owner: str, index: int) -> str:
    return f"wslab-{owner}-node-{index}"


def dockerd_command(owner: str, index: int, address: str) -> list[str]:
    """The node's engine: its own roots and socket, no bridge, no iptables, advertising `address`."""
    d = cluster_dir(owner) / f"node-{index}"
    return ["nsenter", f"--net=/run/netns/{node_ns(owner, index)}", "unshare", "--uts", "sh", "-c",
            f"hostname node-{index} && exec dockerd --host unix://{d}/docker.sock --data-root {d}/data "
            f"--exec-root {d}/exec --pidfile {d}/docker.pid --config-file {d}/daemon.json "
            f"--cgroup-parent /{cgroup_parent(owner, index)} --bridge none --iptables=false --no-new-privileges "
            f"--swarm-default-advertise-addr {address} --log-level warn"]


def validate_nodes(nodes: int, heartbeat_s: float = 2.0) -> None:
    """Refuse, before anything starts, what `up` cannot build."""
    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"--nodes {nodes} must be 1..{MAX_NODES}")
    if not 0.5 <= heartbeat_s <= 30.0:
        raise ClusterError(f"--heartbeat {heartbeat_s:g} must be 0.5..30 seconds")
    _require_root()


# -- shell ------------------------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (network namespaces and extra engines); run as root")
    for tool in ("ip", "nsenter", "unshare", "dockerd"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            raise ClusterError(f"{tool} not found; install iproute2, util-linux and docker.io")


def state_path(owner: str = OWNER) -> Path:
    return cluster_dir(owner) / "cluster.json"


def load(owner: str = OWNER) -> Cluster | None:
    """The cluster `up` recorded for this owner, or None."""
    try:
        raw = json.loads(state_path(owner).read_text())
    except (OSError, ValueError):
        return None
    return Cluster(raw["owner"], raw["host_address"], tuple(Node(**n) for n in raw["nodes"]), raw["heartbeat_s"])


def _save(cluster: Cluster) -> None:
    path = state_path(cluster.owner)
    path.write_text(json.dumps(asdict(cluster), indent=2))


def node_client(node: Node, timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=node.url, timeout=timeout)


def _wait_engine(node: Node, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ClusterError(f"{node.name}'s dockerd exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with closing(node_client(node, timeout=2)) as c:
                c.ping()
                return
        except (docker.errors.DockerException, OSError):
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{node.name}'s dockerd did not answer on {node.socket} after {timeout:.0f}s:\n"
                               f"{_tail(log)}")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_engine(owner: str, index: int, address: str, *, timeout: float = 60.0) -> int:
    """Start node `index`'s dockerd (again, after a kill: same roots, same Swarm identity); its PID."""
    d = cluster_dir(owner) / f"node-{index}"
    log = d / "dockerd.log"
    env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
    with signals.deferred(), open(log, "ab") as out:
        # its own session: a Ctrl-C at the terminal reaches the lab, which stops the engines in order
        proc = subprocess.Popen(dockerd_command(owner, index, address), stdout=out, stderr=out, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_engine(Node(f"node-{index}", address, str(d / "docker.sock")), proc, log, timeout)
    return proc.pid


def up(images: Iterable[str], *, host_client: docker.DockerClient, nodes: int = 3, heartbeat_s: float = 2.0,
       progress: Progress = lambda line: None) -> Cluster:
    """Build the cluster; on any failure (or Ctrl-C) remove what was built, then raise."""
    validate_nodes(nodes, heartbeat_s)
    if load() is not None or segment_ns(OWNER) in _netns():
        raise ClusterError(f"a local cluster of owner {OWNER} exists already; `python -m labs cluster down` first")
    try:
        return _up(list(images), host_client, nodes, heartbeat_s, progress)
    except BaseException:
        with signals.deferred():
            down(progress=progress)
        raise


def _up(images: list[str], host_client: docker.DockerClient, nodes: int, heartbeat_s: float,
        progress: Progress) -> Cluster:
    t0 = time.monotonic()
    k = subnet_octet(OWNER)
    net = f"10.251.{k}"
    if f"{net}.0/24" in _ip("route").stdout:
        raise ClusterError(f"{net}.0/24 is routed on this host already; remove that route or use another WSLAB_OWNER")
    base = cluster_dir(OWNER)
    base.mkdir(parents=True, exist_ok=True)
    seg = segment_ns(OWNER)
    with signals.deferred():
        _ip("netns", "add", seg)
        _ip("-n", seg, "link", "add", "br0", "type", "bridge")
        _ip("-n", seg, "link", "set", "br0", "up")
        _ip("link", "add", host_link(OWNER), "type", "veth", "peer", "name", "host", "netns", seg)
    _ip("-n", seg, "link", "set", "host", "master", "br0", "up")
    _ip("addr", "add", f"{net}.254/24", "dev", host_link(OWNER))
    _ip("link", "set", host_link(OWNER), "up")
    started: list[Node] = []
    for i in range(1, nodes + 1):
        ns, address = node_ns(OWNER, i), f"{net}.{i}"
        with signals.deferred():
            _ip("netns", "add", ns)
            _ip("-n", seg, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", seg, "link", "set", f"n{i}", "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        d = base / f"node-{i}"
        d.mkdir(exist_ok=True)
        (d / "daemon.json").write_text("{}\n")
        started.append(Node(f"node-{i}", address, str(d / "docker.sock")))
    pids = _each(lambda n: start_engine(OWNER, node_index(n.name), n.address), started)
    cluster = Cluster(OWNER, f"{net}.254", tuple(Node(n.name, n.address, n.socket, pid)
                                                  for n, pid in zip(started, pids)), heartbeat_s)
    _save(cluster)
    progress(f"{nodes} engine(s) answer after {time.monotonic() - t0:.1f}s; forming the Swarm")
    _form_swarm(cluster)
    t1 = time.monotonic()
    _load_images(cluster, images, host_client, progress)
    progress(f"images loaded into {nodes} node(s) in {time.monotonic() - t1:.1f}s; "
             f"cluster up in {time.monotonic() - t0:.1f}s")
    return cluster


def _form_swarm(cluster: Cluster) -> None:
    manager = cluster.manager
    with closing(node_client(manager)) as c:
        c.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377",
                     dispatcher_heartbeat_period=int(cluster.heartbeat_s * 1e9))
        token = c.swarm.attrs["JoinTokens"]["Worker"]
    for node in cluster.nodes[1:]:
        with closing(node_client(node)) as c:
            c.swarm.join(remote_addrs=[f"{manager.address}:2377"], join_token=token,
                         advertise_addr=node.address, listen_addr=f"{node.address}:2377")


def require(nodes: int, owner: str = OWNER) -> Cluster:
    """The owner's local cluster, with at least `nodes` nodes whose engines answer; else one clear line."""
    found = load(owner)
    if found is None:
        raise ClusterError(f"no local Swarm of owner {owner}: run `python -m labs cluster up --nodes {max(nodes, 3)}` "
                           "first (or `make scenario-swarm`, which builds one)")
    if len(found.nodes) < nodes:
        raise ClusterError(f"the local Swarm has {len(found.nodes)} node(s); the scenario needs {nodes}: "
                           f"`python -m labs cluster down`, then `cluster up --nodes {nodes}`")
    for node in found.nodes:
        try:
            with closing(node_client(node, timeout=5)) as c:
                c.ping()
        except (docker.errors.DockerException, OSError):
            raise ClusterError(f"{node.name}'s engine does not answer on {node.socket}: "
                               "`python -m labs cluster down`, then `cluster up`") from None
    return found


def ensure_images(cluster: Cluster, tags: Iterable[str], host_client: docker.DockerClient,
                  progress: Progress = lambda line: None) -> None:
    """Load into the nodes whichever of `tags` they lack (the host rebuilt an image since `up`)."""
    missing: set[str] = set()
    for node in cluster.nodes:
        with closing(node_client(node)) as c:
            for tag in tags:
                try:
                    c.images.get(tag)
                except docker.errors.ImageNotFound:
                    missing.add(tag)
    if missing:
        _load_images(cluster, sorted(missing), host_client, progress)


def _load_images(cluster: Cluster, images: list[str], host_client: docker.DockerClient, progress: Progress) -> None:
    """`docker save` the images once into the cluster's directory, then load them into every node at once."""
    if not images:
        return
    tar = cluster_dir(cluster.owner) / "images.tar"
    with open(tar, "wb") as out:
        for chunk in host_client.api.get_image(images[0]) if len(images) == 1 else _save_many(host_client, images):
            out.write(chunk)
    progress(f"saved {', '.join(images)} ({tar.stat().st_size / 1e6:.0f} MB)")

    def load_into(node: Node) -> None:
        with closing(node_client(node, timeout=600)) as c, open(tar, "rb") as data:
            c.images.load(data)

    _each(load_into, list(cluster.nodes))
    tar.unlink()


def _each(job: Callable[[Node], T], nodes: list[Node]) -> list[T]:
    """`job` on every node at once. On an error or a signal the caller goes on at once (to the teardown,
    which stops the engines the other jobs talk to), without waiting for the others."""
    pool = ThreadPoolExecutor(max_workers=len(nodes))
    try:
        return list(pool.map(job, nodes))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _save_many(client: docker.DockerClient, images: list[str]) -> Iterable[bytes]:
    """One archive for several images (shared layers once): GET /images/get?names=a&names=b."""
    response = client.api._get(client.api._url("/images/get"), params={"names": images}, stream=True)
    client.api._raise_for_status(response)
    chunks: Iterable[bytes] = response.iter_content(chunk_size=1 << 20)
    return chunks


# -- node faults ----------------------------------------------------------------------------------------

def node_index(name: str) -> int:
    return int(name.removeprefix("node-"))


def kill_node(cluster: Cluster, name: str) -> None:
    """The node dies at once: its engine, containerd, shims and containers, all SIGKILLed (the kernel
    closes their sockets, as a crashed process's; a machine that loses power sends nothing: that is
    `cut_link`)."""
    index = node_index(name)
    mark = str(cluster_dir(cluster.owner) / f"node-{index}") + "/"
    victims = _processes_mentioning(mark) + _cgroup_pids(_cgroup_dirs(cluster.owner, index))
    _kill(victims, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in victims) and time.monotonic() < deadline:
        time.sleep(0.02)


def restart_node(cluster: Cluster, name: str) -> Cluster:
    """Start a killed node's engine again (same roots: same Swarm identity); the cluster with its new PID,
    recorded."""
    index = node_index(name)
    node = cluster.node(name)
    pid = start_engine(cluster.owner, index, node.address)
    nodes = tuple(Node(n.name, n.address, n.socket, pid) if n.name == name else n for n in cluster.nodes)
    updated = Cluster(cluster.owner, cluster.host_address, nodes, cluster.heartbeat_s)
    _save(updated)
    return updated


def set_link(cluster: Cluster, name: str, up: bool) -> None:
    """The node's veth on the segment, down (cut off from every node and from the host) or up again."""
    _ip("-n", segment_ns(cluster.owner), "link", "set", f"n{node_index(name)}", "up" if up else "down")


# -- teardown ---------------------------------------------------------------------------------------------

def _netns() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]


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


def leftovers(owner: str = OWNER) -> list[str]:
    """What of the owner's local cluster exists: namespaces, the host link, processes, cgroups, the
    directory. Empty when nothing is left."""
    found = [ns for ns in _netns() if ns.startswith(f"wslab-{owner}-")]
    if _ip("link", "show", host_link(owner), check=False).returncode == 0:
        found.append(f"link {host_link(owner)}")
    found += [f"pid {p}" for p in _processes_mentioning(str(cluster_dir(owner)) + "/")]
    found += [str(d) for d in _cgroup_dirs(owner)]
    if cluster_dir(owner).exists():
        found.append(str(cluster_dir(owner)))
    return found


def down(owner: str = OWNER, *, progress: Progress = lambda line: None) -> list[str]:
    """Remove the owner's local cluster, recorded or not (a killed `up` or run): returns what was found."""
    found = leftovers(owner)
    if not found:
        return []
    t0 = time.monotonic()
    recorded = load(owner)
    mark = str(cluster_dir(owner)) + "/"
    engines = [n.pid for n in recorded.nodes if n.pid and mark in _cmdline(n.pid)] if recorded else []
    engines += [p for p in _processes_mentioning(mark) if "dockerd" in _cmdline(p) and p not in engines]
    stop_engines(engines)
    groups = _cgroup_dirs(owner)
    # what a SIGKILLed engine leaves: containerd, its shims, and the containers' processes
    _kill(_processes_mentioning(mark) + _cgroup_pids(groups), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (_processes_mentioning(mark) or _cgroup_pids(groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    _remove_cgroups(groups)
    for ns in _netns():
        if ns.startswith(f"wslab-{owner}-"):
            _ip("netns", "delete", ns, check=False)
    _ip("link", "delete", host_link(owner), check=False)
    d = cluster_dir(owner)
    if d.exists():
        _unmount_under(d)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)], capture_output=True)
    progress(f"local cluster of {owner} removed in {time.monotonic() - t0:.1f}s")
    return found


if __name__ == "__main__":  # pragma: no cover - a manual check: what is left
    print("\n".join(leftovers()) or "nothing left", file=sys.stdout)
