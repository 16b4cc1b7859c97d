"""Room in the host's connection-tracking table for a run. Netfilter tracks every connection that crosses
the bridge (two entries per client over it, three through docker-proxy: `plan.CONNTRACK_PER_CONNECTION`) in
one host-wide table of `net.netfilter.nf_conntrack_max` entries; when it is full, new connections are
dropped, everyone's. When the table has no room for a run and the lab may write the sysctl (it runs as
root), it raises the maximum for the run, says so, and puts the old value back once the run's entries have
drained (closed connections linger 120 s); when it may not, the run waits for room (an earlier run's
entries expiring) or gives up with one line."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...console import Progress
from .plan import PlanError
from .setup import conntrack

SYSCTLS = Path("/proc/sys/net/netfilter")
#: how long a run waits for the conntrack entries of the run before it to expire, or its own to drain
CONNTRACK_WAIT_S = 180.0
#: a raised table is rounded up to a multiple of this, with this share of it spare for everyone else
ROUND_TO = 65_536
SPARE = 0.25


def free_entries(directory: Path = SYSCTLS) -> int | None:
    """Free entries in the host's connection-tracking table; None when the host tracks nothing."""
    size, used = conntrack("nf_conntrack_max", directory), conntrack("nf_conntrack_count", directory)
    return None if size is None or used is None else size - used


def raised_max(size: int, used: int, needed: int) -> int:
    """The table size that holds what is in use, `needed` more and SPARE of itself for others (never
    smaller than `size`), rounded up to ROUND_TO."""
    want = (used + needed) / (1 - SPARE)
    return max(size, math.ceil(want / ROUND_TO) * ROUND_TO)


def writable(directory: Path = SYSCTLS) -> bool:
    path = directory / "nf_conntrack_max"
    try:
        with path.open("r+"):
            return True
    except OSError:
        return False


def wait_for_conntrack(needed: int, *, progress: Progress, timeout: float = CONNTRACK_WAIT_S,
                       directory: Path = SYSCTLS) -> None:
    """Wait until the host's conntrack table has `needed` free entries: a closed connection's entries
    linger (TIME_WAIT, 120 s), so a run right after a big one may not fit yet."""
    deadline = time.monotonic() + timeout
    free = free_entries(directory)
    if free is not None and free < needed:
        progress(f"waiting for {needed} free conntrack entries ({free} now; closed connections linger 120 s)")
    while free is not None and free < needed:
        if time.monotonic() > deadline:
            raise PlanError(f"the host's conntrack table still has only {free} free entries after {timeout:.0f}s, "
                            f"{needed} needed; give a smaller N or raise net.netfilter.nf_conntrack_max")
        time.sleep(1.0)
        free = free_entries(directory)


@contextmanager
def conntrack_room(needed: int, *, progress: Progress, directory: Path = SYSCTLS) -> Iterator[None]:
    """Room for `needed` more tracked connections while the block runs: made by raising the table's maximum
    when it has not the room and may be written (restored afterwards), else waited for."""
    size, used = conntrack("nf_conntrack_max", directory), conntrack("nf_conntrack_count", directory)
    if size is None or used is None or needed <= size - used or not writable(directory):
        wait_for_conntrack(needed, progress=progress, directory=directory)
        yield
        return
    target = raised_max(size, used, needed)
    progress(f"raising the host's net.netfilter.nf_conntrack_max from {size} to {target} for this run "
             f"({needed} entries needed, {used} in use); it is put back afterwards")
    (directory / "nf_conntrack_max").write_text(f"{target}\n")
    try:
        yield
    finally:
        deadline = time.monotonic() + CONNTRACK_WAIT_S
        while (conntrack("nf_conntrack_count", directory) or 0) > size * (1 - SPARE) and time.monotonic() < deadline:
            time.sleep(1.0)
        (directory / "nf_conntrack_max").write_text(f"{size}\n")
        progress(f"net.netfilter.nf_conntrack_max back at {size} ({conntrack('nf_conntrack_count', directory)} "
                 f"entries in use)")
