"""What a command says on its way and on its way out: progress lines, the exit codes every command of the
lab shares (`labs` and `labs.bench` alike), and the log a crash leaves."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from . import settings

#: 0 as declared (a bench: met its floor); 1 not met, or a run failed during its run; 2 bad input or a setup
#: problem found before anything started; 3 a crash of the lab itself; 130 interrupted (Ctrl-C, SIGTERM)
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

Progress = Callable[[str], None]


def progress_printer(quiet: bool) -> Progress:
    """Progress lines on stderr (`· line`), or none at all."""
    if quiet:
        return lambda line: None
    return lambda line: print(f"· {line}", file=sys.stderr, flush=True)


def crash_log(exc: BaseException) -> Path:
    """Write the traceback of a crash to build/crash-<stamp>.log; return its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = settings.BUILD_DIR / f"crash-{stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(traceback.format_exception(exc)))
    return path


def crash_line(name: str, exc: BaseException) -> str:
    """The one line a crash prints: what was raised, and where its traceback went."""
    return f"{name}: internal error {type(exc).__name__}: {str(exc)[:200]} (traceback in {crash_log(exc)})"
