"""python -m labs run|list|clean|images|up|down|fault|heal|scale|deploy|reload|swarm

Exit codes: 0 every verdict as declared; 1 an expectation was not met, or a scenario failed during its run
(the tables of the runs that completed, then one line naming it); 2 bad input or a setup problem found
before anything started (one line says what and how to fix it); 3 a crash of the lab itself (one line
points at the log);
130 interrupted by Ctrl-C or SIGTERM (everything the run started is removed first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import scenario, settings, signals
from .console import (
    EXIT_CRASH,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_PASS,
    EXIT_USAGE,
    crash_line,
    progress_printer,
)
from .errors import LabError, RunFailed


def _setup(progress: Callable[[str], None]):  # type: ignore[no-untyped-def]
    from .infra.engine import ensure_engine
    from .infra.images import ensure_images

    client = ensure_engine(progress=progress)
    try:
        return client, ensure_images(client, progress=progress)
    except BaseException:
        client.close()
        raise


def writable_dir(value: str, flag: str) -> Path:
    """A directory the run can write into (created if missing); refused before anything starts."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise LabError(f"{flag} {value} is a file, not a directory; give a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise LabError(f"{flag} {value}: {probe} is not a writable directory; give one you can write to")
    return path


def existing_dir(value: str, flag: str, needs: str) -> Path:
    path = Path(value)
    if not (path / needs).is_dir():
        raise LabError(f"{flag} {value} has no {needs}/ directory; give the folder that holds {needs}/")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from .report import files, table
    from .runner import execute
    from .spec import plan

    progress = progress_printer(args.quiet)
    if args.port is not None and not 1024 <= args.port <= 65535:
        raise LabError(f"--port {args.port} is out of range 1024..65535")
    templates = existing_dir(args.templates, "--templates", "nginx") if args.templates else settings.TEMPLATES_DIR
    results_dir = writable_dir(args.results, "--results")
    # Every scenario is read, validated and rendered before anything starts.
    loaded = [scenario.load(name) for name in args.scenarios]
    if args.engine == "swarm":
        loaded = [scenario.on_swarm(s) for s in loaded]
    plans = [plan(s, templates=templates) for s in loaded]
    swarm_nodes = max((s.swarm.nodes for s in loaded if s.swarm is not None), default=0)
    # --swarm-up N: build a local Swarm when none exists, and remove it afterwards (make scenario-swarm)
    own_swarm = max(args.swarm_up or 0, swarm_nodes)
    if swarm_nodes:
        from .infra.swarm import nodes

        if args.swarm_up is not None and nodes.load() is None:
            nodes.validate_nodes(own_swarm)
        else:
            own_swarm = 0
            nodes.require(swarm_nodes)
    client, images = _setup(progress)
    for role, image in (("app", images.app), ("redis", images.redis), ("nginx", images.nginx)):
        progress(f"image {role}: {image.tag} — {image.source}")
    results = []
    failed = ""
    try:
        if own_swarm:
            nodes.up(sorted({images.app.tag, images.redis.tag, images.nginx.tag}), host_client=client,
                     nodes=own_swarm, progress=progress)
        for i, p in enumerate(plans):
            try:
                result = execute(client, p, images, host_port=args.port, progress=progress, on_removed=_removed)
            except RunFailed as exc:  # during a run, not before: the run failed (its stack is already gone)
                not_run = ", ".join(q.scenario.name for q in plans[i + 1:])
                failed = f"{p.scenario.name} failed during its run: {exc}"
                failed += f"; not run: {not_run}" if not_run else ""
                break
            path = files.write(result, results_dir, table.table([result]))
            progress(f"{p.scenario.name}: {result.verdict_text}; results in {path}")
            results.append(result)
    finally:
        client.close()
        if own_swarm:
            with signals.deferred():
                nodes.down(progress=progress)
    if results:
        print(table.table(results))
    if failed:
        print(f"wslab: {failed}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_PASS if all(r.passed for r in results) else EXIT_FAIL


_removed_names: list[str] = []
#: what an interrupted command says it removed when it removed nothing
_nothing_removed = "nothing (nothing had been started yet)"


def _removed(names: list[str]) -> None:
    _removed_names.extend(names)


def cmd_list(args: argparse.Namespace) -> int:
    for name in scenario.available():
        s = scenario.load(name)
        expect = ", ".join(f"{m.value} {b}" for m, b in s.expect.items())
        top = s.topology
        print(f"{name:<34} {top.app.value:<9} {top.broker.value:<20} {top.balancer.value:<7} "
              f"replicas={top.replicas:<3} expects {expect}")
    return EXIT_PASS


def cmd_clean(args: argparse.Namespace) -> int:
    from .infra.engine import connect_existing
    from .infra.stack import remove_leftovers
    from .infra.swarm import nodes

    if os.geteuid() == 0:
        with signals.deferred():
            found = nodes.down(progress=progress_printer(args.quiet))
        if found:
            print(f"removed the local Swarm of {settings.OWNER}: {', '.join(found)}")
    client = connect_existing()
    if client is None:
        print("no Docker engine answers: nothing to clean")
        return EXIT_PASS
    with signals.deferred():
        # WSLAB_OWNER set: only what that owner's runs left (several test sessions sharing one engine)
        containers, networks = remove_leftovers(client, owner=os.environ.get("WSLAB_OWNER"))
    client.close()
    print(f"removed {containers} container(s) and {networks} network(s) left by earlier runs")
    return EXIT_PASS


def cmd_swarm(args: argparse.Namespace) -> int:
    """swarm up --nodes N / swarm use --manager URL / swarm down: the Swarm runs use (labs.infra.swarm.nodes)."""
    from .infra.swarm import nodes

    progress = progress_printer(args.quiet)
    if args.action == "use":
        manager = args.manager or settings.DOCKER_HOST
        if not manager:
            raise LabError("swarm use needs --manager URL (or DOCKER_HOST): a Swarm manager's engine")
        joined = nodes.use(manager, args.engines)
        for node in joined.nodes:
            print(f"{node.name:<8} {node.hostname:<20} {node.address:<15} {node.url}")
        print("runs create only their own services, networks, config and images there; `swarm down` removes "
              "the lab's services and forgets the Swarm")
        return EXIT_PASS
    if args.action == "down":
        with signals.deferred():
            removed = nodes.down(progress=progress)
        print(f"removed the local Swarm of {settings.OWNER}" if removed else "no local Swarm: nothing to remove")
        return EXIT_PASS
    nodes.validate_nodes(args.nodes, args.heartbeat)
    client, images = _setup(progress)
    try:
        tags = sorted({images.app.tag, images.redis.tag, images.nginx.tag})
        built = nodes.up(tags, host_client=client, nodes=args.nodes, heartbeat_s=args.heartbeat,
                         progress=progress)
    finally:
        client.close()
    for node in built.nodes:
        print(f"{node.name:<8} {node.address:<15} pid {node.pid:<8} {node.socket}")
    print(f"the host reaches the nodes from {built.host_address}; `python -m labs swarm down` removes it")
    return EXIT_PASS


def cmd_images(args: argparse.Namespace) -> int:
    client, images = _setup(progress_printer(args.quiet))
    client.close()
    for role, image in (("app", images.app), ("redis", images.redis), ("nginx", images.nginx)):
        print(f"{role:<6} {image.tag:<28} {image.source}")
    return EXIT_PASS


def cmd_up(args: argparse.Namespace) -> int:
    from .live import commands

    return commands.up(args, setup=_setup, progress=progress_printer(args.quiet), on_removed=_removed)


def cmd_live(args: argparse.Namespace) -> int:
    """down, fault, heal: act on the stack `up` keeps running."""
    from .live import commands

    return int(getattr(commands, args.command)(args))


def cmd_change(args: argparse.Namespace) -> int:
    """scale, deploy, reload: change the topology of the stack `up` keeps running."""
    from .live import topology

    global _nothing_removed
    _nothing_removed = "nothing (the live stack stays up: the line above says what serves)"
    return int(getattr(topology, args.command)(args))


def add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    name_help = "which live stack (default: default; one per name per checkout)"
    up = sub.add_parser("up", help="start a scenario's stack and keep it up, with a live view",
                        description="Start the scenario's stack, print the chat page's URL, show a live view "
                                    "until Ctrl-C, SIGTERM or `python -m labs down` (which remove everything).")
    up.add_argument("scenario", metavar="SCENARIO", help="a name from `python -m labs list`")
    up.add_argument("--port", type=int, default=None, help="host port for nginx on 127.0.0.1 (default: a free one)")
    up.add_argument("--name", default="default", help=name_help)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="remove the stack `up` keeps running",
                          description="Stop `up` and remove every container and network of its run.")
    down.add_argument("--name", default="default", help=name_help)
    fault = sub.add_parser("fault", help="apply a fault to the running stack (KIND TARGET, as in scenarios)",
                           description="Apply one fault to the stack `up` keeps running: kill-replica, "
                                       "partition-replica, slow-consumer take app-N; restart-redis, pause-redis, "
                                       "kill-pubsub-clients take redis; restart-broker, pause-broker take the "
                                       "broker's container (redis or nats).")
    fault.add_argument("kind", metavar="KIND", help="a fault kind, e.g. kill-replica")
    fault.add_argument("target", metavar="TARGET", help="app-N, redis or nats")
    fault.add_argument("--name", default="default", help=name_help)
    heal = sub.add_parser("heal", help="undo every fault applied with `fault`",
                          description="Undo the faults applied to the running stack, the last first.")
    heal.add_argument("--name", default="default", help=name_help)
    for p in (down, fault, heal):
        p.set_defaults(func=cmd_live)
    add_change_commands(sub, name_help)


def add_change_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], name_help: str) -> None:
    scale = sub.add_parser("scale", help="scale the running stack to N replicas (nginx reloaded with them)",
                           description="Start replicas (the next numbers) and reload nginx with them once ready, or "
                                       "take the newest out of nginx's upstream and stop them, one at a time.")
    scale.add_argument("count", metavar="N", type=int, help="replicas to serve (1..32)")
    deploy = sub.add_parser("deploy", help="rolling restart of every replica of the running stack",
                            description="Replace the replicas --max-unavailable at a time: stop (SIGTERM, or SIGKILL "
                                        "with --kill), start again, wait until ready, --pause between steps. Ctrl-C "
                                        "lets the step under way finish, then stops.")
    how = deploy.add_mutually_exclusive_group()
    how.add_argument("--graceful", dest="graceful", action="store_true", default=True,
                     help="SIGTERM: the replica closes its clients with 1001 and exits (default)")
    how.add_argument("--kill", dest="graceful", action="store_false", help="SIGKILL: the clients' sockets drop")
    deploy.add_argument("--max-unavailable", type=int, default=1, metavar="K",
                        help="replicas replaced at a time (default 1)")
    deploy.add_argument("--pause", type=float, default=0.0, metavar="S",
                        help="seconds between one step's replicas being ready and the next step (default 0; 0..60)")
    deploy.add_argument("--settle", type=float, default=10.0, metavar="S",
                        help="after the last step, wait up to S seconds for the clients it dropped to come back, "
                             "and say when they did (default 10; 0: do not wait)")
    reload = sub.add_parser("reload", help="reload the running stack's balancer with its WebSockets open",
                            description="Reload nginx (or HAProxy) with the same upstream. nginx's old workers keep "
                                        "the worker_shutdown_timeout they started with: --shutdown-timeout T writes "
                                        "T into the new config, and the reload after this one cuts after T seconds.")
    reload.add_argument("--shutdown-timeout", type=float, default=None, metavar="T",
                        help="nginx's worker_shutdown_timeout in the new config, seconds (0.001..600)")
    for p in (scale, deploy, reload):
        p.add_argument("--name", default="default", help=name_help)
        p.set_defaults(func=cmd_change)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m labs", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--quiet", action="store_true", default=settings.QUIET,
                     help="no progress lines (default when CI=true)")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenarios on real containers and print the results tables",
                         description="Run each scenario in turn (its own containers, removed afterwards), "
                                     "write results/<scenario>/<stamp>/ and print a summary of every run, then "
                                     "one table per kind of run (its protocol, broker, engine).")
    run.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="names from `python -m labs list`")
    run.add_argument("--port", type=int, default=None,
                     help="host port for nginx on 127.0.0.1 (default: a free one)")
    run.add_argument("--templates", default=None, help="directory holding nginx/ templates (default: ./templates)")
    run.add_argument("--results", default=str(settings.RESULTS_DIR), help="where results go (default: ./results)")
    run.add_argument("--engine", choices=("docker", "swarm"), default="docker",
                     help="swarm: run on the local Swarm (`swarm up`); scenarios with a [swarm] table always do")
    run.add_argument("--swarm-up", type=int, default=None, metavar="N",
                     help="when the run needs a Swarm and none is up: build a local one of N nodes (at least what "
                          "the scenarios ask), and remove it afterwards")
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
    add_live_commands(sub)
    swarm = sub.add_parser("swarm", help="the Swarm runs use: swarm up --nodes N (local) | use --manager URL | down",
                           description="up: N extra Docker engines, each in its own network namespace, joined into "
                                       "one Swarm, with the lab's images loaded (root). use: a real Swarm, through its "
                                       "manager. down: remove it all (a real one: only the lab's services).")
    swarm.add_argument("action", choices=("up", "use", "down"))
    swarm.add_argument("--manager", default=None, help="use: a real Swarm manager's engine URL (default: DOCKER_HOST)")
    swarm.add_argument("--engines", default="ssh://root@{address}",
                       help="use: each node's engine URL, from its {hostname} and {address} (default: ssh://root@{address})")
    swarm.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3; 1..9)")
    swarm.add_argument("--heartbeat", type=float, default=2.0,
                       help="Swarm's dispatcher heartbeat in seconds (default 2): how soon a lost node is seen")
    swarm.set_defaults(func=cmd_swarm)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signals.install()
    try:
        code = int(args.func(args))
        signals.check()  # a signal during the last step still means: interrupted
        return code
    except LabError as exc:
        print(f"wslab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        name = exc.args[0] if isinstance(exc, signals.Interrupted) else "SIGINT"
        removed = ", ".join(_removed_names) or _nothing_removed
        print(f"wslab: interrupted by {name}; removed: {removed}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug in the lab: one line, the traceback in a file
        from .infra.engine import no_answer

        unanswered = no_answer(exc)  # not a bug: the engine wedged
        if unanswered is not None:
            print(f"wslab: {unanswered}", file=sys.stderr)
            return EXIT_USAGE
        print(crash_line("wslab", exc), file=sys.stderr)
        return EXIT_CRASH
    finally:
        signals.done()
