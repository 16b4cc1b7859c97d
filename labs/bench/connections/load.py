"""The load processes of `bench_connections` and what the host says about the processes on the path.

`LoadGroup` starts one `labs.bench.connections.client` (or another `module` that speaks the same JSON lines,
such as the storm bench's) per share of the connections, each in its own process group, and kills every
group when it exits, on every path (an exception, Ctrl-C, SIGTERM). A load process also ends by itself when
its stdin closes, so even a bench killed with SIGKILL leaves none behind for long.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ... import signals
from ...errors import LabError
from ...infra.usage import container_cpu, docker_proxies, host_cpu, process_cpu
from ...settings import ROOT
from .plan import merge, round_figures
from .ramp import Ramp


class LoadError(LabError):
    """A load process died or did not answer in time."""


CLIENT = "labs.bench.connections.client"


class LoadGroup:
    def __init__(self, shares: list[tuple[int, int]], *, host: str, ports: list[int], room: str,
                 open_timeout: float, concurrency: int, rooms: int = 1, module: str = CLIENT,
                 extra: dict[str, Any] | None = None, ramp: Ramp | None = None,
                 on_window: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.shares, self.host, self.ports, self.room, self.rooms = shares, host, ports, room, rooms
        self.open_timeout, self.concurrency = open_timeout, concurrency
        #: the load process's module, and what its config holds besides the connection bench's keys
        self.module, self.extra = module, dict(extra or {})
        #: the pace of connecting (the whole group's; each process gets its share), and who hears each
        #: process's windows of the ramp as they close
        self.ramp, self.on_window = ramp, on_window
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []
        self.events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()

    def __enter__(self) -> LoadGroup:
        try:
            for k, (first, count) in enumerate(self.shares):
                config = {"host": self.host, "ports": self.ports, "first": first, "count": count, "room": self.room,
                          "rooms": self.rooms, "concurrency": self.concurrency, "open_timeout": self.open_timeout,
                          **self.extra}
                if self.ramp is not None:
                    config["ramp"] = dataclasses.asdict(self.ramp.per_process(len(self.shares)))
                log = tempfile.TemporaryFile("w+")
                self.logs.append(log)
                with signals.deferred():  # a started process is ours before a signal is acted on
                    proc = subprocess.Popen([sys.executable, "-m", self.module, json.dumps(config)],
                                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True, start_new_session=True)
                    self.procs.append(proc)
                threading.Thread(target=self._read, args=(k, proc), daemon=True).start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        # A critical section: a second Ctrl-C cannot leave a load process running.
        with signals.deferred():
            for proc in self.procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in self.procs:
                proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    try:
                        if pipe:
                            pipe.close()
                    except OSError:
                        pass
            for log in self.logs:
                log.close()

    def _read(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.events.put((k, json.loads(line)))
        self.events.put((k, None))

    def _tell(self, k: int, command: dict[str, Any]) -> None:
        stdin = self.procs[k].stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()

    def _await(self, event: str, who: list[int], deadline_s: float) -> dict[int, dict[str, Any]]:
        """Each of `who`'s next `event`; LoadError if one dies or the deadline passes. Short waits, so that
        a signal is acted on between them."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + deadline_s
        while len(got) < len(who):
            if time.monotonic() > deadline:
                raise LoadError(f"load processes {sorted(set(who) - set(got))} sent no {event!r} "
                                f"within {deadline_s:.0f}s")
            try:
                k, message = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if message is None:
                raise LoadError(f"load process {k} exited ({self.procs[k].wait()}): {self._tail(k)}")
            if message.get("event") == event:
                got[k] = message
            elif message.get("event") == "window" and self.on_window is not None:
                self.on_window(k, message)
        return got

    def _tail(self, k: int) -> str:
        log = self.logs[k]
        log.seek(0)
        return " / ".join(log.read().strip().splitlines()[-3:]) or "(no output)"

    def ask(self, command: dict[str, Any], event: str, *, deadline_s: float,
            who: list[int] | None = None) -> list[dict[str, Any]]:
        """Send `command` to each of `who` (every process by default), and return each one's `event` answer."""
        who = list(range(len(self.procs))) if who is None else who
        for k in who:
            self._tell(k, command)
        got = self._await(event, who, deadline_s)
        return [got[k] for k in who]

    def tell(self, command: dict[str, Any], *, who: list[int] | None = None) -> None:
        """Send `command` to each of `who` (every process by default); no answer is awaited."""
        for k in range(len(self.procs)) if who is None else who:
            self._tell(k, command)

    def wait_connected(self, *, deadline_s: float) -> list[dict[str, Any]]:
        got = self._await("connected", list(range(len(self.procs))), deadline_s)
        return [got[k] for k in range(len(self.procs))]

    def stats(self) -> list[dict[str, Any]]:
        """Each load process's open connections, RSS and open files."""
        for k in range(len(self.procs)):
            self._tell(k, {"cmd": "stats"})
        got = self._await("stats", list(range(len(self.procs))), 30)
        return [{**got[k], "pid": self.procs[k].pid, "files": _files(self.procs[k].pid)}
                for k in range(len(self.procs))]

    def broadcast(self, round_: str, *, timeout: float) -> dict[str, Any]:
        """One message into every room at once, each from the room's first connection (connection k for
        room k, held by the process whose share has it), and when every other member received it."""
        senders = {k: [r for r in range(self.rooms) if first <= r < first + count]
                   for k, (first, count) in enumerate(self.shares)}
        senders = {k: rooms for k, rooms in senders.items() if rooms}
        for k, rooms in senders.items():
            self._tell(k, {"cmd": "send", "round": round_, "rooms": rooms})
        sent = self._await("sent", list(senders), 30)
        everyone = list(range(len(self.procs)))
        for k in everyone:
            self._tell(k, {"cmd": "collect", "round": round_, "timeout": timeout})
        got = self._await("arrivals", everyone, timeout + 30)
        at = {mid: t for g in sent.values() for mid, t in g["at"].items()}
        answers = {mid: a for g in got.values() for mid, a in g["answers"].items()}
        return {"id": round_, **round_figures(at, answers, [g["messages"] for g in got.values()]),
                "closed_connections": merge([g["closed"] for g in got.values()])}


def _files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _rss(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def proxy_figures(host_ports: list[int]) -> dict[str, dict[str, int | None]]:
    """Open files and RSS of the docker-proxy process behind each published port (none: not proxied)."""
    return {port: {"pid": pid, "files": _files(pid), "rss_bytes": _rss(pid)}
            for port, pid in docker_proxies(host_ports).items()}


def host_figures() -> dict[str, Any]:
    """The host's available memory, TCP sockets, tracked connections, and load average."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    out: dict[str, Any] = {"mem_available_bytes": int(meminfo["MemAvailable"].split()[0]) * 1024,
                           "mem_total_bytes": int(meminfo["MemTotal"].split()[0]) * 1024,
                           "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    for name in ("nf_conntrack_count", "nf_conntrack_max"):
        try:
            out[name] = int(Path(f"/proc/sys/net/netfilter/{name}").read_text())
        except OSError:
            out[name] = None
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            out["tcp"] = dict(zip(fields[::2], (int(v) for v in fields[1::2])))
    return out


def cpu_snapshot(pids: dict[str, list[int]], containers: dict[str, list[str]]) -> dict[str, float]:
    """Cumulative CPU seconds of each group of host processes and of containers, and of the whole host."""
    busy, total = host_cpu()
    out = {"host busy": busy, "host total": total}
    for group, ids in pids.items():
        out[group] = sum(process_cpu(p) for p in ids)
    for group, cids in containers.items():
        out[group] = sum(container_cpu(c) or 0.0 for c in cids)
    return out


def cpu_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per group, the share of the host's CPU capacity it used between two snapshots (1.0 = every core);
    'host busy' is everything that ran, 'everything else' what ran besides the groups (the kernel's own
    network work, dockerd, any other process on the machine)."""
    total = after["host total"] - before["host total"]
    if total <= 0:
        return {}
    out = {group: round((after[group] - before[group]) / total, 3) for group in after if group != "host total"}
    out["everything else"] = round(max(0.0, out["host busy"] - sum(v for k, v in out.items() if k != "host busy")), 3)
    return out
