"""The detail cells only a run on a Docker Swarm has: where each container ran, and what Swarm said about
its nodes and new tasks as the run went (seconds since the first send; the full list is in report.md)."""

from __future__ import annotations

import re

from .result import RunResult

#: a change Swarm reported: `node-3: down/active`, `app-3 task 1a2b3c: running on node-1`
_NODE = re.compile(r"^(?P<node>[\w.-]+): (?P<state>\S+)$")
_TASK = re.compile(r"^(?P<service>[\w.-]+) task (?P<task>\w+): (?P<state>\w+) on (?P<node>\S+)$")


def on_swarm(result: RunResult) -> bool:
    return any(node != "local" for node in result.nodes.values())


def _number(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def containers_per_node(nodes: dict[str, str]) -> str:
    """`node-1: app-1, nginx, redis · node-2: app-2`."""
    by_node: dict[str, list[str]] = {}
    for container, node in nodes.items():
        by_node.setdefault(node, []).append(container)
    return " · ".join(f"{node}: {', '.join(sorted(names, key=_number))}"
                      for node, names in sorted(by_node.items(), key=lambda kv: _number(kv[0])))


def node_changes(events: list[tuple[float, str]]) -> str:
    """`node-3 down/active +7.55, node-3 ready/active +11.38`: each node's state after the first seen."""
    seen: set[str] = set()
    changes = []
    for t, what in events:
        m = _NODE.match(what)
        if m is None:
            continue
        if m["node"] in seen:
            changes.append(f"{m['node']} {m['state']} {t:+.2f}")
        seen.add(m["node"])
    return ", ".join(changes) or "-"


def new_tasks(events: list[tuple[float, str]]) -> str:
    """`app-3 on node-1 +16.43`: tasks Swarm started during the run (not in its first report), when each
    was running."""
    tasks = [(t, m) for t, what in events if (m := _TASK.match(what))]
    if not tasks:
        return "-"
    first = min(t for t, _ in tasks)
    seen = {m["task"] for t, m in tasks if t == first}
    started = []
    for t, m in tasks:
        if m["task"] not in seen and m["state"] == "running":
            started.append(f"{m['service']} on {m['node']} {t:+.2f}")
            seen.add(m["task"])
    return ", ".join(started) or "-"


def swarm_columns(result: RunResult) -> dict[str, str]:
    return {"containers per node": containers_per_node(result.nodes),
            "node changes (s)": node_changes(result.swarm_events),
            "new tasks running (s)": new_tasks(result.swarm_events)}
