"""How long a stack takes to come up and go: `python -m labs.bench lifecycle --runs 5` (`make bench-lifecycle`)
-> results/bench/lifecycle-<stamp>.json

With warm images, the time from nothing to redis + 3 replicas + nginx all ready (network create, container
create and start, every readiness probe answering), and the teardown time (logs collected, every container
and the network removed), as medians over several runs. The floors: up within 2 s, down within 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from .. import scenario
from ..console import EXIT_FAIL, EXIT_PASS
from ..infra.launch import open_stack
from ..infra.stack import StackSpec
from ..spec import new_run_id, render
from .common import BenchParser, Started, started

FLOORS_S = {"up": 2.0, "down": 1.0}


def lifecycle(bench: Started, runs: int) -> dict[str, Any]:
    s = scenario.load("pubsub")
    conf = render(s)
    ups, downs = [], []
    for i in range(runs):
        spec = StackSpec(run_id=new_run_id(), replicas=s.topology.replicas, broker=s.topology.broker.value,
                         balancer_conf=conf, images=bench.images)
        stack = open_stack(bench.client, spec)
        with stack:  # a signal tears the stack down, then stops the bench (exit 130)
            pass
        ups.append(stack.timings.up_s)
        downs.append(stack.timings.down_s)
        bench.progress(f"run {i + 1}/{runs}: up {stack.timings.up_s:.3f}s, down {stack.timings.down_s:.3f}s")
    return {
        "benchmark": "lifecycle",
        "topology": "redis + 3 app replicas + nginx, warm images",
        "runs": runs,
        "up_s": {"median": statistics.median(ups), "all": ups},
        "down_s": {"median": statistics.median(downs), "all": downs},
        "floors_s": FLOORS_S,
        "machine": bench.machine(),
    }


def parser(prog: str) -> BenchParser:
    return BenchParser(prog, __doc__, runs=5)


def run(args: argparse.Namespace) -> int:
    with started("lifecycle") as bench:
        result = lifecycle(bench, args.runs)
        out = bench.file(".json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    up, down = result["up_s"]["median"], result["down_s"]["median"]
    print(f"lifecycle over {args.runs} runs: up median {up:.3f}s (floor {FLOORS_S['up']}), down median {down:.3f}s "
          f"(floor {FLOORS_S['down']}) -> {out}")
    return EXIT_PASS if up <= FLOORS_S["up"] and down <= FLOORS_S["down"] else EXIT_FAIL
