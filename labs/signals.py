"""Ctrl-C and SIGTERM: stop the run at once, except inside a critical section, which finishes first.

One handler serves both signals. Outside a critical section it raises `Interrupted` in the main thread;
while an asyncio workload runs it cancels that workload instead (an exception raised inside the event loop's
own code could leave it half-updated). Inside `deferred()` it only records the signal: a Docker create
call that was sent must come back with its handle, or the resource exists without anyone to remove it;
a teardown must remove everything. When the outermost deferred section ends, a recorded signal is raised,
once: a second Ctrl-C during the teardown that answers the first is recorded and changes nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    def __init__(self) -> None:
        self.received: list[int] = []
        self.depth = 0
        self.raised = False
        self.cancel: Callable[[], None] | None = None


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    _state.received.append(signum)
    if _state.depth or _state.raised:
        return  # recorded; the critical section (or the teardown under way) raises or ignores it
    if _state.cancel is not None:
        cancel, _state.cancel = _state.cancel, None
        cancel()
        return
    _state.raised = True
    raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (SIGINT stays ignored if the parent ignored it: nohup, `&`)."""
    _state.__init__()  # type: ignore[misc]
    signal.signal(signal.SIGTERM, _handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _handler)


def pending() -> int | None:
    """The first signal received, if any."""
    return _state.received[0] if _state.received else None


def check() -> None:
    """Raise `Interrupted` now if a signal came in (a point where stopping is safe)."""
    if _state.received and not _state.depth:
        _state.raised = True
        raise Interrupted(_state.received[0])


@contextmanager
def deferred() -> Iterator[None]:
    """A critical section: a signal inside it is recorded and raised when the outermost section ends,
    unless the section is itself the answer to an earlier one (a teardown after Ctrl-C: a second Ctrl-C
    cannot cut it short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _state.depth and _state.received and not _state.raised:
        _state.raised = True
        raise Interrupted(_state.received[0])


def done() -> None:
    """The command has finished and cleaned up: a signal from now until the process is gone exits 130 at
    once (no traceback from an interpreter shutting down), after what was printed has gone out."""
    sys.stdout.flush()
    sys.stderr.flush()
    for sig in SIGNALS:
        if signal.getsignal(sig) is _handler:
            signal.signal(sig, _exit_now)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    os.write(2, f"wslab: interrupted by {name}; removed: nothing (the run had finished and cleaned up)\n".encode())
    os._exit(130)


@contextmanager
def cancelling(cancel: Callable[[], None]) -> Iterator[None]:
    """While the body runs, a signal calls `cancel()` (e.g. cancels an asyncio task) instead of raising."""
    if _state.received and not _state.depth:
        check()
    _state.cancel = cancel
    try:
        yield
    finally:
        _state.cancel = None
