"""What every bench shares: its command line (`BenchParser`), one start (`run_bench` handles Ctrl-C and
SIGTERM from the first line on; `started` brings the engine and the images, and names the results path and
the machine) and one exit-code rule (`run_bench`).

Exit codes, as `labs` itself: 0 the bench ran and met its floor; 1 it ran and missed it, or a run failed
(one line says what); 2 bad input or a setup problem found before anything started (one line says what and
how to fix it; nothing was started); 3 a crash of the lab (one line points at the log); 130 interrupted by
Ctrl-C or SIGTERM (what the bench started was removed on the way out).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import docker

from .. import settings, signals
from ..console import (
    EXIT_CRASH,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Progress,
    crash_line,
    progress_printer,
)
from ..errors import LabError, RunFailed
from ..infra import engine, images
from ..infra.usage import describe_machine
from ..spec import utc_stamp


def runs_count(text: str) -> int:
    """A bench's --runs: a whole number, at least 1 (no run measures nothing; a median of nothing crashes)."""
    try:
        runs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if runs < 1:
        raise argparse.ArgumentTypeError(f"{runs} runs measure nothing; give 1 or more")
    return runs


class BenchParser(argparse.ArgumentParser):
    """A bench's command line: its docstring as the description, and `--runs` (`runs_count`) when given a
    default. A mistake is one line and exit 2, before anything starts."""

    def __init__(self, prog: str, doc: str | None, *, runs: int | None = None, runs_help: str | None = None) -> None:
        super().__init__(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        if runs is not None:
            self.add_argument("--runs", type=runs_count, default=runs, help=runs_help or f"runs (default {runs})")

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


@dataclass(frozen=True)
class Started:
    """A bench under way: the engine and images it runs on, its progress lines, and where its results go."""

    name: str
    client: docker.DockerClient
    images: images.ImageSet
    progress: Progress
    stamp: str

    def folder(self) -> Path:
        """results/bench/<name>-<stamp>/, created."""
        path = settings.RESULTS_DIR / "bench" / f"{self.name}-{self.stamp}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file(self, suffix: str = ".json") -> Path:
        """results/bench/<name>-<stamp><suffix>, its folder created."""
        path = settings.RESULTS_DIR / "bench" / f"{self.name}-{self.stamp}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def machine(self) -> dict[str, Any]:
        """The machine the bench ran on: cores, platform, Python, the engine's version, memory."""
        return describe_machine(self.client.version().get("Version", "?"))


@contextmanager
def started(name: str) -> Iterator[Started]:
    """The one start of every bench, once its input has been checked: a Docker engine and the lab's images.
    A setup problem here is a LabError (exit 2: nothing was started); a LabError from the body, once the
    bench is under way, is a run that failed (`RunFailed`, exit 1). The engine's client is closed on every
    way out."""
    progress = progress_printer(settings.QUIET)
    client = engine.ensure_engine(progress=progress)
    try:
        found = images.ensure_images(client, progress=progress)
        try:
            yield Started(name, client, found, progress, utc_stamp())
        except RunFailed:
            raise
        except LabError as exc:
            raise RunFailed(str(exc)) from exc
    finally:
        client.close()


def run_bench(name: str, main: Callable[[], int]) -> int:
    """`main`'s exit code under the one rule (module docstring), with one line on stderr for anything but
    a verdict: `name: what happened`. Ctrl-C and SIGTERM are handled from here on (labs/signals.py)."""
    signals.install()
    try:
        code = main()
        signals.check()  # a signal during the last step still means: interrupted
        return code
    except RunFailed as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except LabError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signal = exc.args[0] if isinstance(exc, signals.Interrupted) else "SIGINT"
        print(f"{name}: interrupted by {signal}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug in the lab: one line, the traceback in a file
        print(crash_line(name, exc), file=sys.stderr)
        return EXIT_CRASH
    finally:
        signals.done()
