"""A Redis Cluster in the stack: its nodes as Backends, how the lab forms it, and what it costs per message.

Nodes redis-1..M are the masters and redis-M+1..M*(1+R) their replicas (redis-M+k replicates master
((k-1) mod M)+1). Each node joins the back network (the replicas reach it there by name) and a network of
its own, "bus", which only the nodes join: the lab introduces the nodes to each other by their bus
addresses, so every cluster-bus connection runs over it and the bus network's byte counters inside each
node are the cluster bus's traffic, apart from the clients'. Nodes announce their name
(`cluster-announce-hostname` + `cluster-preferred-endpoint-type hostname`): MOVED replies and CLUSTER SLOTS
give clients a name that resolves on the back network, not a bus address they cannot reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker.errors
from docker.models.containers import Container

from ..errors import StackError
from .running import Handles
from .stack import REDIS_READY, Backend, Stack
from .usage import container_cpu

SLOTS = 16384
PORT = 6379
BUS = "bus"
#: how long a master may be silent before the others call it failed (and its replica takes over)
NODE_TIMEOUT_MS = 1000
POLL_S = 0.05


def node_names(masters: int, replicas: int) -> list[str]:
    return [f"redis-{i}" for i in range(1, masters * (1 + replicas) + 1)]


def master_of(index: int, masters: int) -> int:
    """The master (1..M) that node number `index` (1-based) replicates; `index` itself for a master."""
    return index if index <= masters else (index - masters - 1) % masters + 1


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """16384 slots split into `masters` contiguous, inclusive ranges, as even as they come."""
    edges = [SLOTS * i // masters for i in range(masters + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(masters)]


def broker_url(masters: int) -> str:
    """What the replicas get as `--redis`: every master's URL, comma-separated."""
    return ",".join(f"redis://redis-{i}:{PORT}/0" for i in range(1, masters + 1))


def cluster_backends(image: str, masters: int, replicas: int) -> tuple[Backend, ...]:
    """Every node as a Backend: cluster mode, its config file under /tmp, announcing its own name.

    `cluster-require-full-coverage no`: while a killed master's slots wait for their replica to take over,
    the other shards keep serving (the default would stop the whole cluster). No persistence: Pub/Sub keeps
    nothing anyway.
    """
    return tuple(
        Backend(name, image, (
            "redis-server", "--port", str(PORT), "--bind", "0.0.0.0", "--protected-mode", "no",
            "--dir", "/tmp", "--save", "", "--appendonly", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", "/tmp/nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "no",
            "--cluster-announce-hostname", name, "--cluster-preferred-endpoint-type", "hostname",
        ), REDIS_READY, networks=(BUS,))
        for name in node_names(masters, replicas))


def parse_info(text: str) -> dict[str, str]:
    """`CLUSTER INFO` / `INFO` text as a dict (comment lines and blanks skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


def publish_calls(text: str) -> dict[str, tuple[int, int]]:
    """From `INFO commandstats`: {"publish" | "spublish": (calls, microseconds inside Redis)} for the
    commands that were called."""
    out: dict[str, tuple[int, int]] = {}
    for key, value in parse_info(text).items():
        command = key.removeprefix("cmdstat_")
        if command in ("publish", "spublish"):
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            out[command] = (int(fields.get("calls", 0)), int(float(fields.get("usec", 0))))
    return out


def myself_flags(text: str) -> list[str]:
    """The flags of the node that answered `CLUSTER NODES` (its "myself" line): e.g. ["myself", "master"]."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and "myself" in parts[2].split(","):
            return parts[2].split(",")
    return []


def parse_counters(text: str) -> dict[str, tuple[int, int]]:
    """Lines `MAC RX_BYTES TX_BYTES` (one per interface) as {mac: (rx, tx)}."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out[parts[0].lower()] = (int(parts[1]), int(parts[2]))
    return out


def cli(container: Container, *args: str) -> str:
    code, out = container.exec_run(["redis-cli", "-p", str(PORT), *args])
    text = out.decode(errors="replace").strip()
    if code != 0 or text.startswith(("ERR", "(error)")):
        raise StackError(f"redis-cli {' '.join(args)} on {container.name} failed ({code}): {text[:200]}")
    return text


def _address(container: Container, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


@dataclass
class Former:
    """Forms the cluster on a started stack: slots, MEET over the bus, REPLICATE, then cluster_state:ok."""

    masters: int
    replicas: int

    def __call__(self, stack: Stack) -> None:
        names = node_names(self.masters, self.replicas)
        nodes = {n: stack.containers[n] for n in names}
        deadline = time.monotonic() + stack.spec.ready_timeout
        bus = stack.networks[BUS].name
        with ThreadPoolExecutor(max_workers=6) as pool:
            addresses = dict(zip(names, pool.map(lambda n: _address(nodes[n], bus), names)))
            list(pool.map(lambda i_r: cli(nodes[f"redis-{i_r[0]}"], "CLUSTER", "ADDSLOTSRANGE", *map(str, i_r[1])),
                          enumerate(slot_ranges(self.masters), 1)))
            first = nodes["redis-1"]
            for name in names[1:]:
                cli(first, "CLUSTER", "MEET", addresses[name], str(PORT))
            self._until(stack, deadline, "every node knows all the others", pool, nodes,
                        lambda c: parse_info(cli(c, "CLUSTER", "INFO")).get("cluster_known_nodes") == str(len(names)))
            ids = {n: cli(nodes[n], "CLUSTER", "MYID") for n in names[:self.masters]}
            for i, name in enumerate(names[self.masters:], self.masters + 1):
                self._replicate(stack, deadline, nodes[name], ids[f"redis-{master_of(i, self.masters)}"])
            self._until(stack, deadline, "cluster_state:ok on every node", pool, nodes,
                        lambda c: parse_info(cli(c, "CLUSTER", "INFO")).get("cluster_state") == "ok")
            replicas = {n: c for n, c in nodes.items() if n not in ids}
            self._until(stack, deadline, "every replica in sync with its master", pool, replicas,
                        lambda c: parse_info(cli(c, "INFO", "replication")).get("master_link_status") == "up")
        stack.progress(f"formed a Redis Cluster: {self.masters} masters, {self.replicas} replica(s) each")

    def _replicate(self, stack: Stack, deadline: float, node: Container, master_id: str) -> None:
        """CLUSTER REPLICATE, retried until the node has heard of its master through the gossip."""
        while True:
            try:
                cli(node, "CLUSTER", "REPLICATE", master_id)
                return
            except StackError:
                if stack.stopping or time.monotonic() > deadline:
                    raise
            time.sleep(POLL_S)

    @staticmethod
    def _until(stack: Stack, deadline: float, what: str, pool: ThreadPoolExecutor, nodes: dict[str, Container],
               probe: Callable[[Container], bool]) -> None:
        """Poll `probe` on every node until it holds on all of them, or fail naming those it does not."""
        while True:
            if stack.stopping:
                raise StackError("forming the cluster: the stack is being removed")
            results = dict(zip(nodes, pool.map(probe, nodes.values())))
            waiting = [n for n, ok in results.items() if not ok]
            if not waiting:
                return
            if time.monotonic() > deadline:
                info = cli(nodes[waiting[0]], "CLUSTER", "INFO").replace("\r", "").replace("\n", "; ")
                raise StackError(f"Redis Cluster not formed after {stack.spec.ready_timeout:.1f}s: {what} does "
                                 f"not hold on {', '.join(waiting)} ({waiting[0]}: {info[:300]})")
            time.sleep(POLL_S)


COUNTERS = ("for d in /sys/class/net/*; do echo $(cat $d/address) $(cat $d/statistics/rx_bytes) "
            "$(cat $d/statistics/tx_bytes); done")


@dataclass(frozen=True)
class NodeReading:
    """One node at one moment: bytes on its bus and back networks, CPU seconds, bus messages by type."""

    bus: tuple[int, int]
    back: tuple[int, int]
    cpu_s: float | None
    stats: dict[str, int]
    role: str
    #: when its container last started: a different value in the second reading means it was restarted
    started: str = ""


def read_node(stack: Handles, name: str) -> NodeReading:
    container = stack.containers[name]
    container.reload()
    nets = container.attrs["NetworkSettings"]["Networks"]
    macs = {role: nets[stack.networks[role].name]["MacAddress"].lower() for role in (BUS, "back")}
    code, out = container.exec_run(["sh", "-c", COUNTERS])
    counters = parse_counters(out.decode(errors="replace"))
    if code != 0 or macs[BUS] not in counters or macs["back"] not in counters:
        raise StackError(f"{name}: no interface counters (exit {code}): its bus bytes were not measured")
    info = parse_info(cli(container, "CLUSTER", "INFO"))
    stats = {k.removeprefix("cluster_stats_messages_"): int(v) for k, v in info.items()
             if k.startswith("cluster_stats_messages_") and v.isdigit()}
    role = parse_info(cli(container, "INFO", "replication")).get("role", "?")
    return NodeReading(counters.get(macs[BUS], (0, 0)), counters.get(macs["back"], (0, 0)),
                       container_cpu(container.id), stats, role, str(container.attrs["State"]["StartedAt"]))


@dataclass
class Meter:
    """Two readings of every node, before the clients join and after the drain: what the run cost them.

    The first reading is taken before the workload starts, not when sending starts: under load a reading
    (two `docker exec` per node) can take seconds, and one taken beside the senders would miss messages.
    The window's bus bytes therefore include the gossip of the joining phase too."""

    stack: Handles
    names: list[str]
    started: float = 0.0
    before: dict[str, NodeReading] = field(default_factory=dict)

    def _read_all(self) -> dict[str, NodeReading]:
        """Every node that answers (a node killed and not yet back is left out)."""
        def read(name: str) -> NodeReading | None:
            try:
                return read_node(self.stack, name)
            except (StackError, docker.errors.APIError, KeyError):
                return None

        with ThreadPoolExecutor(max_workers=6) as pool:
            readings = dict(zip(self.names, pool.map(read, self.names)))
        return {n: r for n, r in readings.items() if r is not None}

    def begin(self) -> None:
        self.before = self._read_all()
        self.started = time.monotonic()

    def end(self) -> dict[str, Any]:
        """The window's costs per node, for `History.probes["cluster"]` (empty when `begin` never ran)."""
        if not self.before:
            return {}
        window = time.monotonic() - self.started
        after = self._read_all()
        nodes: dict[str, Any] = {}
        unread = [name for name in self.names if name not in self.before or name not in after]
        for name in self.names:
            if name in unread:
                continue
            a, b = self.before[name], after[name]
            restarted = a.started != b.started
            if restarted:  # a killed master started again: its counters began again, its CPU is unknown
                a = NodeReading((0, 0), (0, 0), None, {}, a.role)
            cpu = None if a.cpu_s is None or b.cpu_s is None else round(b.cpu_s - a.cpu_s, 3)
            nodes[name] = {
                "role": b.role, "bus_rx": b.bus[0] - a.bus[0], "bus_tx": b.bus[1] - a.bus[1],
                "back_rx": b.back[0] - a.back[0], "back_tx": b.back[1] - a.back[1], "cpu_s": cpu,
                "restarted": restarted,
                "bus_messages_sent": {k.removesuffix("_sent"): v - a.stats.get(k, 0) for k, v in b.stats.items()
                                      if k.endswith("_sent") and v - a.stats.get(k, 0)},
            }
        return {"window_s": round(window, 3), "nodes": nodes, "unread": unread}
