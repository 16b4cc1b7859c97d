"""python -m labs run|list|clean|images — exit 0 pass, 1 an expectation not met, 2 usage or setup error."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Callable, Sequence

from . import report, scenario, settings
from .errors import LabError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def progress_printer(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda line: None
    return lambda line: print(f"· {line}", file=sys.stderr, flush=True)


def _setup(progress: Callable[[str], None]):  # type: ignore[no-untyped-def]
    from .engine import ensure_engine
    from .images import ensure_images

    client = ensure_engine(progress=progress)
    return client, ensure_images(client, progress=progress)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import execute

    progress = progress_printer(args.quiet)
    scenarios = [scenario.load(name) for name in args.scenarios]  # all validated before anything starts
    if args.port is not None and not 1024 <= args.port <= 65535:
        raise LabError(f"--port {args.port} is out of range 1024..65535")
    templates = Path(args.templates) if args.templates else settings.TEMPLATES_DIR
    client, images = _setup(progress)
    for role, image in (("app", images.app), ("redis", images.redis), ("nginx", images.nginx)):
        progress(f"image {role}: {image.tag} — {image.source}")
    results = []
    try:
        for s in scenarios:
            result = execute(client, s, images, host_port=args.port, templates=templates, progress=progress)
            path = report.write(result, Path(args.results))
            progress(f"{s.name}: {result.verdict.validity.value}; results in {path}")
            results.append(result)
    finally:
        client.close()
    print(report.table(results))
    return EXIT_PASS if all(r.passed for r in results) else EXIT_FAIL


def cmd_list(args: argparse.Namespace) -> int:
    for name in scenario.available():
        s = scenario.load(name)
        expect = ", ".join(f"{m.value} {b}" for m, b in s.expect.items())
        print(f"{name:<22} {s.topology.broker.value:<20} replicas={s.topology.replicas:<3} expects {expect}")
    return EXIT_PASS


def cmd_clean(args: argparse.Namespace) -> int:
    from .engine import connect_existing
    from .stack import remove_leftovers

    client = connect_existing()
    if client is None:
        print("no Docker engine answers: nothing to clean")
        return EXIT_PASS
    containers, networks = remove_leftovers(client)
    client.close()
    print(f"removed {containers} container(s) and {networks} network(s) left by earlier runs")
    return EXIT_PASS


def cmd_images(args: argparse.Namespace) -> int:
    client, images = _setup(progress_printer(args.quiet))
    client.close()
    for role, image in (("app", images.app), ("redis", images.redis), ("nginx", images.nginx)):
        print(f"{role:<6} {image.tag:<28} {image.source}")
    return EXIT_PASS


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m labs", description=__doc__)
    top.add_argument("--quiet", action="store_true", default=settings.QUIET,
                     help="no progress lines (default when CI=true)")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenarios on real containers and print the table",
                         description="Run each scenario in turn (its own containers, removed afterwards), "
                                     "write results/<scenario>/<stamp>/ and print one table.")
    run.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="names from `python -m labs list`")
    run.add_argument("--port", type=int, default=None,
                     help="host port for nginx on 127.0.0.1 (default: a free one)")
    run.add_argument("--templates", default=None, help="directory holding nginx/ templates (default: ./templates)")
    run.add_argument("--results", default=str(settings.RESULTS_DIR), help="where results go (default: ./results)")
    run.set_defaults(func=cmd_run)

    sub.add_parser("list", help="list scenarios and what each expects",
                   description="List the scenarios in scenarios/ with their declared expectations."
                   ).set_defaults(func=cmd_list)
    sub.add_parser("clean", help="remove containers and networks left by killed runs",
                   description="Remove every container and network labelled by the lab."
                   ).set_defaults(func=cmd_clean)
    sub.add_parser("images", help="make sure the images exist (build them when missing)",
                   description="Start a Docker engine if needed and build or find the three images."
                   ).set_defaults(func=cmd_images)
    return top


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # teardown runs on SIGTERM as on Ctrl-C
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"wslab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wslab: interrupted; everything the run started was removed", file=sys.stderr)
        return EXIT_INTERRUPTED
