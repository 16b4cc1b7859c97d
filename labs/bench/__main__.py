"""python -m labs.bench BENCH [options]: run one benchmark; `python -m labs.bench BENCH --help` for its options.

Exit codes, for every bench: 0 it ran and met its floor; 1 it ran and missed it, or a run failed; 2 bad input
or a setup problem found before anything started; 3 a crash of the lab (one line points at the log); 130
interrupted by Ctrl-C or SIGTERM (what the bench started is removed first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from ..console import EXIT_PASS, EXIT_USAGE
from . import capacity, defaults, faults, lifecycle, partitioning, replicas, signals
from .common import BenchParser, run_bench
from .connections import run as connections
from .storm import run as storm


class Bench(Protocol):
    """What every bench module offers: its command line, and its run (an exit code, or a LabError)."""

    def parser(self, prog: str) -> BenchParser: ...

    def run(self, args: argparse.Namespace) -> int: ...


#: bench name -> its module, and what it measures
BENCHES: dict[str, tuple[Bench, str]] = {
    "lifecycle": (lifecycle, "median up/down time of redis + 3 replicas + nginx (floors 2 s / 1 s)"),
    "faults": (faults, "every fault scenario N times: what each broker loses, medians"),
    "signals": (signals, "SIGINT and SIGTERM at many moments of a run: signal-to-exit times vs 2 s"),
    "capacity": (capacity, "no broker / PubSub / Streams x replicas: the offered rate climbed until it breaks"),
    "replicas": (replicas, "the lab's Python replica vs the article's Node server: knees and their ratio"),
    "connections": (connections, "N idle WebSockets through nginx: connect rate, memory, round times, loss"),
    "partitioning": (partitioning, "N connections in R rooms: one Redis vs a Redis Cluster, by room or not"),
    "defaults": (defaults, "the stack of `labs up pubsub` at its sized capacity (20,000): what was refused"),
    "storm": (storm, "N clients reconnect at once after a replica dies: recovery times, handshake peaks, loss"),
}
PROG = "python -m labs.bench"


def usage() -> str:
    lines = [f"usage: {PROG} BENCH [options]   ({PROG} BENCH --help: its options)", "", "benches:"]
    lines += [f"  {name:<13} {what}" for name, (_, what) in BENCHES.items()]
    return "\n".join(lines) + "\n\n" + (__doc__ or "").split("\n\n", 1)[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(usage(), end="")
        return EXIT_PASS
    if not args or args[0] not in BENCHES:
        given = f"unknown bench {args[0]!r}" if args else "no bench named"
        print(f"{PROG}: {given}; give one of {', '.join(BENCHES)}", file=sys.stderr)
        return EXIT_USAGE
    name, rest = args[0], args[1:]
    bench = BENCHES[name][0]
    try:
        parsed = bench.parser(f"{PROG} {name}").parse_args(rest)
    except SystemExit as exc:  # --help (0), or a mistake already said in one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_bench(f"bench-{name}", lambda: bench.run(parsed))


if __name__ == "__main__":
    code = main()
    # Leave at once, as `python -m labs` does: a Ctrl-C while the interpreter finalizes would print no line.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
