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

The host's own engine is never touched. `down` (with `host`) stops every engine by PID (SIGTERM, then SIGKILL), kills
what a SIGKILLed engine left (shims and container processes: by cmdline and by cgroup), unmounts, and
removes namespaces, links, cgroups and directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import docker
import docker.errors

from ... import signals
from ...errors import SwarmError
from ...settings import OWNER
from . import host
from .host import (
    cgroup_parent,
    host_link,
    ip,
    netns,
    node_index,
    node_ns,
    segment_ns,
    subnet_octet,
    swarm_dir,
)

MAX_NODES = 9
Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    """A node as scenarios name it (node-1 manages), the address the host reaches it at, and its engine:
    a local Swarm's socket path, or a real node's engine URL (ssh://…, tcp://…)."""

    name: str
    address: str
    socket: str
    pid: int = 0
    #: the node's hostname in the Swarm ("": its name, as on the local Swarm)
    hostname: str = ""

    @property
    def url(self) -> str:
        return self.socket if "://" in self.socket else f"unix://{self.socket}"

    @property
    def swarm_name(self) -> str:
        return self.hostname or self.name


@dataclass(frozen=True)
class Swarm:
    """What `up` built, recorded in `<dir>/swarm.json` so that `down`, `clean` and runs find it."""

    owner: str
    host_address: str
    nodes: tuple[Node, ...]
    heartbeat_s: float = 2.0
    #: a real Swarm the lab was pointed at (`swarm use`): it only creates its services there, and has no
    #: engines to kill or links to cut
    remote: bool = False

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise SwarmError(f"no node {name!r} in the Swarm (nodes: {', '.join(n.name for n in self.nodes)})")


# -- names and checks, pure ------------------------------------------------------------------------------



def dockerd_command(owner: str, index: int, address: str) -> list[str]:
    """The node's engine: its own roots and socket, no bridge, no iptables, advertising `address`."""
    d = swarm_dir(owner) / f"node-{index}"
    return ["nsenter", f"--net=/run/netns/{node_ns(owner, index)}", "unshare", "--uts", "sh", "-c",
            f"hostname node-{index} && exec dockerd --host unix://{d}/docker.sock --data-root {d}/data "
            f"--exec-root {d}/exec --pidfile {d}/docker.pid --config-file {d}/daemon.json "
            f"--cgroup-parent /{cgroup_parent(owner, index)} --bridge none --iptables=false --no-new-privileges "
            f"--swarm-default-advertise-addr {address} --log-level warn"]


def validate_nodes(nodes: int, heartbeat_s: float = 2.0) -> None:
    """Refuse, before anything starts, what `up` cannot build."""
    if not 1 <= nodes <= MAX_NODES:
        raise SwarmError(f"--nodes {nodes} must be 1..{MAX_NODES}")
    if not 0.5 <= heartbeat_s <= 30.0:
        raise SwarmError(f"--heartbeat {heartbeat_s:g} must be 0.5..30 seconds")
    _require_root()


# -- shell ------------------------------------------------------------------------------------------------



def _require_root() -> None:
    if os.geteuid() != 0:
        raise SwarmError("the local Swarm needs root (network namespaces and extra engines); run as root")
    for tool in ("ip", "nsenter", "unshare", "dockerd"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            raise SwarmError(f"{tool} not found; install iproute2, util-linux and docker.io")


def state_path(owner: str = OWNER) -> Path:
    return swarm_dir(owner) / "swarm.json"


def load(owner: str = OWNER) -> Swarm | None:
    """The Swarm `up` recorded for this owner, or None."""
    try:
        raw = json.loads(state_path(owner).read_text())
    except (OSError, ValueError):
        return None
    return Swarm(raw["owner"], raw["host_address"], tuple(Node(**n) for n in raw["nodes"]), raw["heartbeat_s"],
                   raw.get("remote", False))


def _save(swarm: Swarm) -> None:
    path = state_path(swarm.owner)
    path.write_text(json.dumps(asdict(swarm), indent=2))


def node_client(node: Node, timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=node.url, timeout=timeout)


def _wait_engine(node: Node, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SwarmError(f"{node.name}'s dockerd exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with closing(node_client(node, timeout=2)) as c:
                c.ping()
                return
        except (docker.errors.DockerException, OSError):
            pass
        if time.monotonic() > deadline:
            raise SwarmError(f"{node.name}'s dockerd did not answer on {node.socket} after {timeout:.0f}s:\n"
                             f"{_tail(log)}")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_engine(owner: str, index: int, address: str, *, timeout: float = 60.0) -> int:
    """Start node `index`'s dockerd (again, after a kill: same roots, same Swarm identity); its PID."""
    d = swarm_dir(owner) / f"node-{index}"
    log = d / "dockerd.log"
    env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
    with signals.deferred(), open(log, "ab") as out:
        # its own session: a Ctrl-C at the terminal reaches the lab, which stops the engines in order
        proc = subprocess.Popen(dockerd_command(owner, index, address), stdout=out, stderr=out, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_engine(Node(f"node-{index}", address, str(d / "docker.sock")), proc, log, timeout)
    return proc.pid


def up(images: Iterable[str], *, host_client: docker.DockerClient, nodes: int = 3, heartbeat_s: float = 2.0,
       progress: Progress = lambda line: None) -> Swarm:
    """Build the Swarm; on any failure (or Ctrl-C) remove what was built, then raise."""
    validate_nodes(nodes, heartbeat_s)
    if load() is not None or segment_ns(OWNER) in netns():
        raise SwarmError(f"a local Swarm of owner {OWNER} exists already; `python -m labs swarm down` first")
    try:
        return _up(list(images), host_client, nodes, heartbeat_s, progress)
    except BaseException:
        with signals.deferred():
            down(progress=progress)
        raise


def _up(images: list[str], host_client: docker.DockerClient, nodes: int, heartbeat_s: float,
        progress: Progress) -> Swarm:
    t0 = time.monotonic()
    k = subnet_octet(OWNER)
    net = f"10.251.{k}"
    if f"{net}.0/24" in ip("route").stdout:
        raise SwarmError(f"{net}.0/24 is routed on this host already; remove that route or use another WSLAB_OWNER")
    base = swarm_dir(OWNER)
    base.mkdir(parents=True, exist_ok=True)
    seg = segment_ns(OWNER)
    with signals.deferred():
        ip("netns", "add", seg)
        ip("-n", seg, "link", "add", "br0", "type", "bridge")
        ip("-n", seg, "link", "set", "br0", "up")
        ip("link", "add", host_link(OWNER), "type", "veth", "peer", "name", "host", "netns", seg)
    ip("-n", seg, "link", "set", "host", "master", "br0", "up")
    ip("addr", "add", f"{net}.254/24", "dev", host_link(OWNER))
    ip("link", "set", host_link(OWNER), "up")
    started: list[Node] = []
    for i in range(1, nodes + 1):
        ns, address = node_ns(OWNER, i), f"{net}.{i}"
        with signals.deferred():
            ip("netns", "add", ns)
            ip("-n", seg, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", seg, "link", "set", f"n{i}", "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        d = base / f"node-{i}"
        d.mkdir(exist_ok=True)
        (d / "daemon.json").write_text("{}\n")
        started.append(Node(f"node-{i}", address, str(d / "docker.sock")))
    pids = _each(lambda n: start_engine(OWNER, node_index(n.name), n.address), started)
    swarm = Swarm(OWNER, f"{net}.254", tuple(Node(n.name, n.address, n.socket, pid)
                                                  for n, pid in zip(started, pids)), heartbeat_s)
    _save(swarm)
    progress(f"{nodes} engine(s) answer after {time.monotonic() - t0:.1f}s; forming the Swarm")
    _form_swarm(swarm)
    t1 = time.monotonic()
    _load_images(swarm, images, host_client, progress)
    progress(f"images loaded into {nodes} node(s) in {time.monotonic() - t1:.1f}s; "
             f"Swarm up in {time.monotonic() - t0:.1f}s")
    return swarm


def _form_swarm(swarm: Swarm) -> None:
    manager = swarm.manager
    with closing(node_client(manager)) as c:
        c.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377",
                     dispatcher_heartbeat_period=int(swarm.heartbeat_s * 1e9))
        token = c.swarm.attrs["JoinTokens"]["Worker"]
    for node in swarm.nodes[1:]:
        with closing(node_client(node)) as c:
            c.swarm.join(remote_addrs=[f"{manager.address}:2377"], join_token=token,
                         advertise_addr=node.address, listen_addr=f"{node.address}:2377")


def require(nodes: int, owner: str = OWNER) -> Swarm:
    """The owner's local Swarm, with at least `nodes` nodes whose engines answer; else one clear line."""
    found = load(owner)
    if found is None:
        raise SwarmError(f"no local Swarm of owner {owner}: run `python -m labs swarm up --nodes {max(nodes, 3)}` "
                         "first (or `make scenario-swarm`, which builds one)")
    if len(found.nodes) < nodes:
        raise SwarmError(f"the local Swarm has {len(found.nodes)} node(s); the scenario needs {nodes}: "
                         f"`python -m labs swarm down`, then `swarm up --nodes {nodes}`")
    for node in found.nodes:
        try:
            with closing(node_client(node, timeout=5)) as c:
                c.ping()
        except (docker.errors.DockerException, OSError):
            raise SwarmError(f"{node.name}'s engine does not answer on {node.socket}: "
                             "`python -m labs swarm down`, then `swarm up`") from None
    return found


def attach(manager_url: str, engines: str, owner: str = OWNER) -> Swarm:
    """A real Swarm, through its manager: node-1 is that manager, the other nodes node-2… in hostname order;
    each node's engine is at `engines` formatted with its hostname and address (`ssh://root@{address}`)."""
    try:
        engines.format(hostname="h", address="a")
    except (KeyError, IndexError, ValueError):
        raise SwarmError(f"--engines {engines!r}: use {{hostname}} and {{address}} only") from None
    try:
        with closing(docker.DockerClient(base_url=manager_url, timeout=30)) as client:
            swarm = client.info().get("Swarm", {})
            listed = client.nodes.list() if swarm.get("ControlAvailable") else []
    except docker.errors.DockerException as exc:
        raise SwarmError(f"--manager {manager_url}: no engine answers ({str(exc)[:120]})") from None
    if not listed:
        raise SwarmError(f"--manager {manager_url} is not a Swarm manager (docker info: "
                         f"{swarm.get('LocalNodeState', '?')}, no control)")
    me = swarm["NodeID"]
    ordered = sorted(listed, key=lambda n: (n.id != me, n.attrs["Description"]["Hostname"]))
    nodes = []
    for i, n in enumerate(ordered, 1):
        hostname, address = n.attrs["Description"]["Hostname"], n.attrs["Status"]["Addr"]
        url = manager_url if n.id == me else engines.format(hostname=hostname, address=address)
        nodes.append(Node(f"node-{i}", address, url, hostname=hostname))
    return Swarm(owner, "", tuple(nodes), remote=True)


def use(manager_url: str, engines: str, owner: str = OWNER) -> Swarm:
    """Record a real Swarm as the owner's Swarm (runs find it as they find a local one)."""
    if load(owner) is not None:
        raise SwarmError(f"a Swarm of owner {owner} is recorded already; `python -m labs swarm down` first")
    found = attach(manager_url, engines, owner)
    swarm_dir(owner).mkdir(parents=True, exist_ok=True)
    _save(found)
    try:
        return require(len(found.nodes), owner)
    except BaseException:
        state_path(owner).unlink()
        raise


def remove_services(client: docker.DockerClient, owner: str) -> int:
    """Remove every service, config and network the lab labelled on a Swarm manager (one owner's)."""
    selector = {"label": ["wslab.run", f"wslab.owner={owner}"]}
    services = client.services.list(filters=selector)
    for s in services:
        s.remove()
    rest = [*client.configs.list(filters=selector), *client.networks.list(filters=selector)]
    deadline = time.monotonic() + 30
    for thing in rest:
        while True:
            try:
                thing.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:  # still in use by a task being removed
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    return len(services) + len(rest)


def ensure_images(swarm: Swarm, tags: Iterable[str], host_client: docker.DockerClient,
                  progress: Progress = lambda line: None) -> None:
    """Load into the nodes whichever of `tags` they lack (the host rebuilt an image since `up`)."""
    missing: set[str] = set()
    for node in swarm.nodes:
        with closing(node_client(node)) as c:
            for tag in tags:
                try:
                    c.images.get(tag)
                except docker.errors.ImageNotFound:
                    missing.add(tag)
    if missing:
        _load_images(swarm, sorted(missing), host_client, progress)


def _load_images(swarm: Swarm, images: list[str], host_client: docker.DockerClient, progress: Progress) -> None:
    """`docker save` the images once into the Swarm's directory, then load them into every node at once."""
    if not images:
        return
    tar = swarm_dir(swarm.owner) / "images.tar"
    with open(tar, "wb") as out:
        for chunk in host_client.api.get_image(images[0]) if len(images) == 1 else _save_many(host_client, images):
            out.write(chunk)
    progress(f"saved {', '.join(images)} ({tar.stat().st_size / 1e6:.0f} MB)")

    def load_into(node: Node) -> None:
        with closing(node_client(node, timeout=600)) as c, open(tar, "rb") as data:
            c.images.load(data)

    _each(load_into, list(swarm.nodes))
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

def local_only(swarm: Swarm, what: str) -> None:
    if swarm.remote:
        raise SwarmError(f"{what} needs the local Swarm (`swarm up`): the lab does not run a real node's engine")


def kill_node(swarm: Swarm, name: str) -> None:
    """The node dies at once: its engine, containerd, shims and containers, all SIGKILLed (the kernel
    closes their sockets, as a crashed process's; a machine that loses power sends nothing: that is
    `cut_link`)."""
    local_only(swarm, "kill-node")
    host.kill_all(host.node_processes(swarm.owner, node_index(name)))


def restart_node(swarm: Swarm, name: str) -> Swarm:
    """Start a killed node's engine again (same roots: same Swarm identity); the Swarm with its new PID,
    recorded."""
    index = node_index(name)
    node = swarm.node(name)
    pid = start_engine(swarm.owner, index, node.address)
    nodes = tuple(Node(n.name, n.address, n.socket, pid) if n.name == name else n for n in swarm.nodes)
    updated = Swarm(swarm.owner, swarm.host_address, nodes, swarm.heartbeat_s)
    _save(updated)
    return updated


def set_link(swarm: Swarm, name: str, up: bool) -> None:
    """The node's veth on the segment, down (cut off from every node and from the host) or up again."""
    local_only(swarm, "partition-node")
    ip("-n", segment_ns(swarm.owner), "link", "set", f"n{node_index(name)}", "up" if up else "down")


# -- teardown ---------------------------------------------------------------------------------------------

def leftovers(owner: str = OWNER) -> list[str]:
    """What of the owner's local Swarm exists (empty: nothing)."""
    return host.leftovers(owner)


def down(owner: str = OWNER, *, progress: Progress = lambda line: None) -> list[str]:
    """Remove the owner's local Swarm, recorded or not (a killed `up` or run): returns what was found."""
    recorded = load(owner)
    if recorded is not None and recorded.remote:  # a real Swarm: only what the lab made there goes
        with closing(node_client(recorded.manager)) as manager:
            remove_services(manager, owner)
        return host.remove(owner, [], progress=progress)
    return host.remove(owner, [n.pid for n in recorded.nodes] if recorded else [], progress=progress)








if __name__ == "__main__":  # pragma: no cover - a manual check: what is left
    print("\n".join(leftovers()) or "nothing left", file=sys.stdout)
