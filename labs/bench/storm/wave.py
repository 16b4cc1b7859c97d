"""What one reconnect wave did, from what the clients recorded and what the meters read. Pure: lists in,
figures out; times are seconds on the host's monotonic clock, and every figure is relative to the trigger
(`t0`, the moment the bench acted).

The clients record every attempt as [client, started, ended, outcome, replica] (outcome "ok" with the replica
that welcomed it, else why not: "http 502", "timeout", "reset", ...) and every drop as [client, at, code].
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..connections.plan import median_of, time_to_fraction

Attempt = Sequence[Any]
Drop = Sequence[Any]
#: the width of the window a peak rate is counted over, and the step of the time series
WINDOW_S, STEP_S = 1.0, 0.1


def peak_rate(times: Sequence[float], window: float = WINDOW_S) -> int:
    """The most events in any `window` seconds (a window starting at an event: that is where a maximum is)."""
    ordered = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(ordered):
        while j < len(ordered) and ordered[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def first_drops(drops: Sequence[Drop], t0: float) -> dict[int, float]:
    """Each client's first drop at or after the trigger."""
    out: dict[int, float] = {}
    for client, at, _code in sorted(drops, key=lambda d: d[1]):
        if at >= t0 and client not in out:
            out[int(client)] = float(at)
    return out


def drop_instant(drops: Sequence[Drop], t0: float) -> float:
    """When the wave began: the first drop at or after the trigger (the trigger itself when nothing dropped)."""
    return min((float(d[1]) for d in drops if d[1] >= t0), default=t0)


def back_times(attempts: Sequence[Attempt], drops: Sequence[Drop], t0: float) -> dict[int, float | None]:
    """Per client that dropped after the trigger, seconds from the trigger until its first connection after
    the drop was welcomed; None when none was."""
    dropped = first_drops(drops, t0)
    back: dict[int, float | None] = dict.fromkeys(dropped)
    for client, _started, ended, outcome, _replica in sorted(attempts, key=lambda a: a[2]):
        c = int(client)
        if outcome == "ok" and c in back and back[c] is None and ended >= dropped[c]:
            back[c] = float(ended) - t0
    return back


def recovery(attempts: Sequence[Attempt], drops: Sequence[Drop], t0: float) -> dict[str, Any]:
    """How many clients dropped, and seconds after the trigger until 50%, 95% and 100% of them were back."""
    back = back_times(attempts, drops, t0)
    times = [t for t in back.values() if t is not None]
    n = len(back)
    fractions = {key: time_to_fraction(times, n, f) if n else None
                 for key, f in (("back_50_s", 0.5), ("back_95_s", 0.95), ("back_100_s", 1.0))}
    return {"dropped": n, "back": len(times), "never_back": n - len(times), **fractions}


def attempt_times(attempts: Sequence[Attempt], t0: float) -> dict[str, float | None]:
    """How long the welcomed attempts started at or after the trigger took, from the first byte sent to the
    welcome: the median, the 95th percentile and the longest (None when none was welcomed)."""
    spans = sorted(float(a[2]) - float(a[1]) for a in attempts if a[1] >= t0 and a[3] == "ok")
    if not spans:
        return {"attempt_p50_s": None, "attempt_p95_s": None, "attempt_max_s": None}
    return {"attempt_p50_s": round(spans[(len(spans) - 1) // 2], 3),
            "attempt_p95_s": round(spans[min(len(spans) - 1, int(len(spans) * 0.95))], 3),
            "attempt_max_s": round(spans[-1], 3)}


def refusals(attempts: Sequence[Attempt], t0: float) -> dict[str, int]:
    """Failed attempts started at or after the trigger, by outcome."""
    return dict(Counter(str(a[3]) for a in attempts if a[1] >= t0 and a[3] != "ok").most_common())


def handshake_peaks(attempts: Sequence[Attempt], t0: float, replicas: Sequence[str]) -> dict[str, Any]:
    """Peaks over any one second after the trigger: attempts that reached the balancer (started), handshakes
    it completed (welcomed), and handshakes each replica completed (by the replica that welcomed the client)."""
    wave = [a for a in attempts if a[1] >= t0]
    ok = [a for a in wave if a[3] == "ok"]
    return {"attempts_peak_per_s": peak_rate([float(a[1]) for a in wave]),
            "accepted_peak_per_s": peak_rate([float(a[2]) for a in ok]),
            "attempts": len(wave), "accepted": len(ok),
            "replica_peak_per_s": {r: peak_rate([float(a[2]) for a in ok if a[4] == r]) for r in replicas},
            "replica_accepted": {r: sum(1 for a in ok if a[4] == r) for r in replicas}}


def drop_codes(drops: Sequence[Drop], t0: float) -> dict[str, int]:
    """How the connections that dropped at or after the trigger were closed (a close code, or none)."""
    return dict(Counter(str(d[2]) for d in drops if d[1] >= t0).most_common())


def timeline(attempts: Sequence[Attempt], t0: float, *, end: float, width: float = WINDOW_S) -> list[dict[str, Any]]:
    """Per `width`-second bin from the trigger to `end` (seconds after it): attempts started, and attempts
    ended by outcome ("ok" or why not)."""
    n = int(end // width) + 1
    started, ended = [0] * n, [Counter[str]() for _ in range(n)]
    for _client, began, over, outcome, _replica in attempts:
        k = int((began - t0) // width)
        if 0 <= k < n:
            started[k] += 1
        k = int((over - t0) // width)
        if 0 <= k < n:
            ended[k][str(outcome)] += 1
    return [{"t": round(k * width, 3), "started": started[k], "ended": dict(ended[k])} for k in range(n)]


def open_series(attempts: Sequence[Attempt], drops: Sequence[Drop], replicas: Sequence[str], t0: float, *,
                start: float, end: float, step: float = STEP_S) -> dict[str, list[float | int]]:
    """Connections open on each replica over time, seen from the clients: +1 when a connection was welcomed,
    -1 when it dropped. `t` is seconds from the trigger, from `start` to `end` in steps of `step`."""
    events: list[tuple[float, int, int, str]] = []  # (when, order, client, replica or "" for a drop)
    for client, _started, ended, outcome, replica in attempts:
        if outcome == "ok":
            events.append((float(ended), 0, int(client), str(replica)))
    for client, at, _code in drops:
        events.append((float(at), 1, int(client), ""))
    events.sort()
    on: dict[int, str] = {}
    count = dict.fromkeys(replicas, 0)
    grid = [round(start + k * step, 6) for k in range(int(round((end - start) / step)) + 1)]
    out: dict[str, list[float | int]] = {"t": list(grid), **{r: [] for r in replicas}}
    e = 0
    for t in grid:
        while e < len(events) and events[e][0] - t0 <= t:
            _when, _order, client, replica = events[e]
            if replica:  # a welcome
                on[client] = replica
                count[replica] = count.get(replica, 0) + 1
            elif client in on:  # a drop of the connection it had
                gone = on.pop(client)
                count[gone] -= 1
            e += 1
        for r in replicas:
            out[r].append(count.get(r, 0))
    return out


def sessions(attempts: Sequence[Attempt], drops: Sequence[Drop]) -> dict[int, list[tuple[float, float | None]]]:
    """Each client's connections as (welcomed, dropped or None while still open)."""
    events = sorted([(float(a[2]), 0, int(a[0])) for a in attempts if a[3] == "ok"]
                    + [(float(d[1]), 1, int(d[0])) for d in drops])
    out: dict[int, list[tuple[float, float | None]]] = {}
    for when, kind, client in events:
        spans = out.setdefault(client, [])
        if kind == 0:
            spans.append((when, None))
        elif spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], when)
    return out


def ticker_loss(sent: Sequence[Sequence[Any]], receipts: Mapping[str, Sequence[Sequence[Any]]],
                answers: Mapping[str, str], members: Sequence[int], spans: dict[int, list[tuple[float, float | None]]],
                *, since: float, until: float) -> dict[str, Any]:
    """The broadcast room's deliveries for the messages sent between `since` and `until` that the sender's
    replica acknowledged (`unacked`: the others, written to a connection that had already died): a message is owed
    to every other member whose connection was open when it was sent and never dropped after; `lost` is owed
    and never received. `missed_away`: sent while the member had no connection (Redis Pub/Sub keeps nothing
    for it); `cut`: sent while the member's connection was open but doomed (it dropped later: a killed
    replica's sockets close over a second or more, and what reached it meanwhile went nowhere). `lost_members`: how
    many members lost something, `lost_sent_s`: when the first and the last lost message were sent (seconds
    after `since`)."""
    got = {mid: Counter(int(r[0]) for r in rs) for mid, rs in receipts.items()}
    out = Counter(owed=0, delivered=0, lost=0, missed_away=0, cut=0, duplicated=0, messages=0, unacked=0)
    losers: Counter[int] = Counter()
    lost_at: list[float] = []
    for mid, at, sender in sent:
        if not since <= at <= until:
            continue
        out["messages"] += 1
        copies = got.get(mid, Counter())
        if answers.get(mid) != "ack":
            out["unacked"] += 1
            out["duplicated"] += sum(max(0, n - 1) for n in copies.values())
            continue
        for k in members:
            if k == sender:
                continue
            out["duplicated"] += max(0, copies[k] - 1)
            span = next((s for s in spans.get(k, []) if s[0] <= at and (s[1] is None or s[1] >= at)), None)
            if span is None:
                out["missed_away"] += 1
            elif span[1] is not None:
                out["cut"] += 1
            else:
                out["owed"] += 1
                out["delivered" if copies[k] else "lost"] += 1
                if not copies[k]:
                    losers[k] += 1
                    lost_at.append(float(at))
    # who lost and when: a few members losing a run of messages is not a few messages lost by everyone
    return {**dict(out), "lost_members": len(losers),
            "lost_sent_s": [round(min(lost_at) - since, 2), round(max(lost_at) - since, 2)] if lost_at else None}


def ticker_delays(sent: Sequence[Sequence[Any]], receipts: Mapping[str, Sequence[Sequence[Any]]], *,
                  since: float, until: float) -> dict[str, float | None]:
    """Seconds from send to receipt of the broadcast room's messages sent between `since` and `until`: the
    median, the 99th percentile and the longest (None when nothing arrived)."""
    at = {str(m[0]): float(m[1]) for m in sent if since <= m[1] <= until}
    delays = sorted(float(r[1]) - at[mid] for mid, rs in receipts.items() if mid in at for r in rs)
    if not delays:
        return {"delay_p50_s": None, "delay_p99_s": None, "delay_max_s": None}
    return {"delay_p50_s": round(delays[(len(delays) - 1) // 2], 4),
            "delay_p99_s": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 4),
            "delay_max_s": round(delays[-1], 4)}


STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z ")


def meter_samples(log: str, *, wall_to_monotonic: float) -> list[tuple[float, dict[str, int]]]:
    """The meter's log (each sample: Redis's TIME, two lines of digits, then INFO commandstats) as
    [(monotonic time, {command: calls})]. `wall_to_monotonic`: add it to a wall-clock time."""
    out: list[tuple[float, dict[str, int]]] = []
    digits: list[int] = []
    for raw in log.splitlines():
        line = STAMP_RE.sub("", raw).strip()
        if line.isdigit():
            digits.append(int(line))
            if len(digits) == 2:
                out.append((digits[0] + digits[1] / 1e6 + wall_to_monotonic, {}))
                digits = []
            continue
        digits = []
        if line.startswith("cmdstat_") and out:
            name, _, fields = line[len("cmdstat_"):].partition(":")
            calls = dict(f.split("=", 1) for f in fields.split(",") if "=" in f).get("calls")
            if calls is not None and calls.isdigit():
                out[-1][1][name.lower()] = int(calls)
    return out


def command_rate(samples: Sequence[tuple[float, dict[str, int]]], command: str, *, since: float,
                 until: float) -> dict[str, float | int | None]:
    """`command`'s calls between `since` and `until` (from the samples around them) and its peak rate per
    second between two samples. None when no two samples frame the window."""
    inside = [s for s in samples if since - 1.0 <= s[0] <= until + 1.0]
    if len(inside) < 2:
        return {"calls": None, "peak_per_s": None}
    peak = max(((b[1].get(command, 0) - a[1].get(command, 0)) / (b[0] - a[0])
                for a, b in zip(inside, inside[1:]) if b[0] > a[0]), default=None)
    return {"calls": inside[-1][1].get(command, 0) - inside[0][1].get(command, 0),
            "peak_per_s": None if peak is None else round(peak, 1)}


def cores(samples: Sequence[tuple[float, dict[str, float]]], cpus: int) -> dict[str, dict[str, float]]:
    """Per group, the cores it used on average over the samples and at most between two samples. A counter
    that went down counts from zero when it could have started within the interval (a container started
    again: a new cgroup); else a process of the group ended, and the interval counts nothing for it."""
    out: dict[str, dict[str, float]] = {}
    if len(samples) < 2:
        return out
    span = samples[-1][0] - samples[0][0]
    for group in samples[0][1]:
        used, peak = 0.0, 0.0
        for (ta, a), (tb, b) in zip(samples, samples[1:]):
            before, after = a.get(group, 0.0), b.get(group, 0.0)
            if after >= before:
                delta = after - before
            else:
                delta = after if after <= (tb - ta) * cpus else 0.0
            used += delta
            if tb > ta:
                peak = max(peak, delta / (tb - ta))
        out[group] = {"mean": round(used / span, 3) if span > 0 else 0.0, "peak": round(peak, 3)}
    return out


def medians(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    """The median of one figure over runs; None when no run measured it."""
    return median_of([r.get(key) for r in runs])
