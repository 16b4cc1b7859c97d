"""What one load user counted, and what a load step adds up to. Pure: no sockets, no locust.

At high rates the lab keeps counts and an HdrHistogram per user, not one record per message: a user knows
how many messages it sent and acknowledged, and, per sender, how many distinct messages it received and how
many came twice. A step merges every user's tally. A message is owed to a member when the pattern promises
it: with a broker, every other member of the room; without one, only the members on the sender's replica.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

#: latencies in microseconds, 1 µs .. 60 s, three significant digits
LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass
class Tally:
    """One user's counts. `seen[sender]` holds the sequence numbers received from that sender."""

    name: str
    replica: str = ""
    sent: int = 0
    acked: int = 0
    dropped: bool = False
    error: str = ""
    #: sends that went out more than 10 ms after their scheduled time (the generator fell behind)
    late_sends: int = 0
    #: deliveries of an earlier step's messages that came after that step's report
    stale: int = 0
    seen: dict[str, set[int]] = field(default_factory=dict)
    duplicates: int = 0
    latency_us: HdrHistogram = field(default_factory=new_histogram)

    def received(self, sender: str, seq: int, latency_us: int) -> None:
        got = self.seen.setdefault(sender, set())
        if seq in got:
            self.duplicates += 1
            return
        got.add(seq)
        self.latency_us.record_value(min(max(latency_us, LOWEST_US), HIGHEST_US))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "replica": self.replica, "sent": self.sent, "acked": self.acked,
                "dropped": self.dropped, "error": self.error, "late_sends": self.late_sends,
                "stale": self.stale, "received": {s: len(seqs) for s, seqs in sorted(self.seen.items())},
                "duplicates": self.duplicates,
                "latency_us": base64.b64encode(self.latency_us.encode()).decode()}


@dataclass(frozen=True)
class UserCounts:
    """A tally as it comes back from a load process: distinct receipts per sender, not their numbers."""

    name: str
    replica: str
    sent: int
    acked: int
    dropped: bool
    error: str
    late_sends: int
    stale: int
    received: dict[str, int]
    duplicates: int
    latency_us: HdrHistogram

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserCounts:
        hist = new_histogram()
        encoded = d.get("latency_us") or ""
        if encoded:
            hist.add(HdrHistogram.decode(base64.b64decode(encoded)))
        # the Node driver (users.mjs) sends [microseconds, count] pairs, already at three significant digits
        for value, count in d.get("latency_counts", ()):
            hist.record_value(min(max(int(value), LOWEST_US), HIGHEST_US), int(count))
        return cls(str(d["name"]), str(d.get("replica", "")), int(d["sent"]), int(d["acked"]),
                   bool(d.get("dropped")), str(d.get("error", "")), int(d.get("late_sends", 0)),
                   int(d.get("stale", 0)), {str(k): int(v) for k, v in d.get("received", {}).items()}, int(d.get("duplicates", 0)), hist)


@dataclass(frozen=True)
class StepCounts:
    """A step's totals: what was owed, delivered (distinct), lost, duplicated, and the latency histogram."""

    users: int
    joined: int
    sent: int
    acked: int
    owed: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    dropped: int
    late_sends: int
    stale: int
    latency_us: HdrHistogram

    def percentile_ms(self, q: float) -> float | None:
        if self.latency_us.get_total_count() == 0:
            return None
        return self.latency_us.get_value_at_percentile(q) / 1000.0

    @property
    def max_ms(self) -> float | None:
        if self.latency_us.get_total_count() == 0:
            return None
        return self.latency_us.get_max_value() / 1000.0


def owed_to(sender: UserCounts, receiver: UserCounts, *, broker: bool) -> bool:
    """Whether the pattern promises `sender`'s messages to `receiver`."""
    if sender.name == receiver.name or not receiver.replica or not sender.replica:
        return False
    return broker or sender.replica == receiver.replica


def add_up(users: list[UserCounts], *, expected_users: int, broker: bool) -> StepCounts:
    """Merge every user's counts. A user that never joined is a member nobody can deliver to: every
    message owed to it counts as lost, as does everything a member missed."""
    by_name = {u.name: u for u in users}
    joined = [u for u in users if u.replica]
    owed = delivered = lost = unexpected = 0
    for receiver in joined:
        for sender in joined:
            if sender.name == receiver.name:
                continue
            got = receiver.received.get(sender.name, 0)
            if owed_to(sender, receiver, broker=broker):
                owed += sender.sent
                delivered += min(got, sender.sent)
                lost += max(0, sender.sent - got)
            else:
                unexpected += got
        unexpected += sum(n for s, n in receiver.received.items() if s not in by_name)
    # members that never reported (their process failed) or never joined: owed everything that was sent
    missing = max(0, expected_users - len(joined))
    sent = sum(u.sent for u in users)
    lost += missing * sent if broker else 0
    owed += missing * sent if broker else 0
    hist = new_histogram()
    for u in users:
        hist.add(u.latency_us)
    return StepCounts(users=expected_users, joined=len(joined), sent=sent, acked=sum(u.acked for u in users),
                      owed=owed, delivered=delivered, lost=lost, duplicated=sum(u.duplicates for u in users),
                      unexpected=unexpected, dropped=sum(1 for u in users if u.dropped),
                      late_sends=sum(u.late_sends for u in users), stale=sum(u.stale for u in users),
                      latency_us=hist)
