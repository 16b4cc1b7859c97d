"""Waiting for something to be ready, the one way both engines wait: a probe polled with a deadline and an
interval, the transient errors of a thing still starting counted as "not yet", anything else raised, and on
timeout one message that says what was awaited, where, for how long, with its logs."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable

from ..errors import StackError

#: what a probe raises while what it asks is still starting (a refused or reset connection, a half answer)
TRANSIENT = (ConnectionError, http.client.HTTPException, socket.timeout, OSError)


def http_get(port: int, path: str, timeout: float = 1.0, *, host: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def never() -> str | None:
    return None


def no_logs() -> str:
    return ""


def wait_ready(what: str, probe: Callable[[], bool], *, timeout: float, where: str, stopping: threading.Event,
               gone: Callable[[], str | None] = never, logs: Callable[[], str] = no_logs,
               interval: float = 0.05, gone_every: int = 4) -> None:
    """Poll `probe` until it returns true.

    A TRANSIENT exception counts as not ready; any other goes up. Every `gone_every` polls `gone()` is asked
    whether the thing cannot become ready any more (a container that exited: it says why), and that fails
    at once. `stopping` set (the stack is being removed) fails at once too. At the deadline:
    "<what> not ready after <timeout>s (<where>)", then `logs()` on the lines below when it says anything.
    """
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        if stopping.is_set():
            raise StackError(f"{what}: the stack is being removed")
        try:
            if probe():
                return
        except TRANSIENT:
            pass
        polls += 1
        if polls % gone_every == 0:
            why = gone()
            if why is not None:
                raise StackError(f"{what} {why}")
        if time.monotonic() > deadline:
            tail = logs()
            raise StackError(f"{what} not ready after {timeout:.1f}s ({where})" + (f":\n{tail}" if tail else ""))
        time.sleep(interval)
