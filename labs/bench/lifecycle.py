"""Benchmarks (not tests): `python -m labs.bench.lifecycle lifecycle --runs 5` -> results/bench/lifecycle-<stamp>.json

lifecycle: with warm images, the time from nothing to redis + 3 replicas + nginx all ready (network
create, container create and start, every readiness probe answering), and the teardown time (logs
collected, every container and the network removed), as medians over several runs.
"""

from __future__ import annotations

import json
import statistics

from .. import scenario, settings, signals
from ..cli import BenchParser, progress_printer, run_bench
from ..infra.engine import ensure_engine
from ..infra.images import ensure_images
from ..infra.launch import open_stack
from ..infra.stack import StackSpec
from ..infra.usage import describe_machine
from ..spec import new_run_id, render, utc_stamp


def lifecycle(runs: int) -> dict[str, object]:
    progress = progress_printer(settings.QUIET)
    client = ensure_engine(progress=progress)
    try:
        images = ensure_images(client, progress=progress)
        s = scenario.load("pubsub")
        conf = render(s)
        ups, downs = [], []
        for i in range(runs):
            spec = StackSpec(run_id=new_run_id(), replicas=s.topology.replicas, broker=s.topology.broker.value,
                             nginx_conf=conf, images=images)
            stack = open_stack(client, spec)
            with stack:  # a signal tears the stack down, then stops the bench (exit 130)
                pass
            ups.append(stack.timings.up_s)
            downs.append(stack.timings.down_s)
            progress(f"run {i + 1}/{runs}: up {stack.timings.up_s:.3f}s, down {stack.timings.down_s:.3f}s")
        engine = client.version().get("Version", "?")
    finally:
        client.close()
    return {
        "benchmark": "lifecycle",
        "topology": "redis + 3 app replicas + nginx, warm images",
        "runs": runs,
        "up_s": {"median": statistics.median(ups), "all": ups},
        "down_s": {"median": statistics.median(downs), "all": downs},
        "floors_s": {"up": 2.0, "down": 1.0},
        "machine": describe_machine(engine),
    }


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m labs.bench.lifecycle", __doc__, runs=5)
    parser.add_argument("name", choices=["lifecycle"])
    args = parser.parse_args(argv)
    signals.install()
    result = lifecycle(args.runs)
    out = settings.RESULTS_DIR / "bench" / f"lifecycle-{utc_stamp()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    up, down = result["up_s"]["median"], result["down_s"]["median"]  # type: ignore[index]
    print(f"lifecycle over {args.runs} runs: up median {up:.3f}s (floor 2.0), down median {down:.3f}s "
          f"(floor 1.0) -> {out}")
    return 0 if up <= 2.0 and down <= 1.0 else 1


if __name__ == "__main__":
    run_bench(main, "bench-lifecycle")
