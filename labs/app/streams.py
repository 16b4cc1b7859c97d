"""Redis Streams broker: durable rooms that a reconnecting client can replay from where it left off.

One stream per room, `stream:<room>`, capped by an approximate MAXLEN. Every replica reads every entry of
the rooms it has members in with plain XREAD from its own last id (a consumer group would split entries
between replicas instead of fanning them out). A publish is idempotent by message id, so a client may resend
a message whose ack it never got without creating a second entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from .brokers import Deliver, PublishFailed, RedisBroker, Replay, _redis_errors

log = logging.getLogger("wslab.streams")

# Add the entry only if this message id was never added (SET NX on a marker), numbered by a per-room
# sequence: a reader that sees sequence n after n-k-1 knows k entries were trimmed before it read them.
# Returns {entry id, n}, or false when the id was already added (no new entry).
IDEMPOTENT_XADD = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then
  local n = redis.call('INCR', KEYS[3])
  local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[2], 'n', n)
  return {sid, n}
end
return false
"""


def sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


class RedisStreams(RedisBroker):
    BLOCK_MS = 400
    PUBLISH_DEADLINE = 30.0
    durable = True

    def __init__(self, redis_url: str, *, maxlen: int = 100_000, name: str = "") -> None:
        super().__init__(redis_url, name=name)
        self.maxlen = maxlen
        self.members: Counter[str] = Counter()
        self.positions: dict[str, str] = {}
        self.seqs: dict[str, int] = {}
        #: per room with members here: finding where its reader starts (every joining member awaits it)
        self.starting: dict[str, asyncio.Future[None]] = {}
        self.wake = asyncio.Event()

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        self.xadd = self.redis.register_script(IDEMPOTENT_XADD)
        self.tasks.append(asyncio.create_task(self._read()))

    def key(self, room: str) -> str:
        return f"stream:{room}"

    async def end_id(self, room: str) -> tuple[str, int]:
        """The id and sequence number of the room's newest entry (("0-0", 0) for none): a reader starting
        after it misses nothing added later."""
        newest = await self._retry(lambda: self.redis.xrevrange(self.key(room), count=1))
        if not newest:
            return "0-0", 0
        sid, fields = newest[0]
        return sid.decode(), int(fields[b"n"])

    async def join(self, room: str) -> None:
        """Read the room from its end on, once it has a member here. Every member waits until that position
        is known, not only the first: one welcomed and replayed before it would miss what is added between
        the end of its replay and the reader's start."""
        self.members[room] += 1
        started = self.starting.get(room)
        if started is None or (started.done() and (started.cancelled() or started.exception() is not None)):
            started = self.starting[room] = asyncio.ensure_future(self._start_reading(room))
        await asyncio.shield(started)

    async def _start_reading(self, room: str) -> None:
        position = await self.end_id(room)
        if self.members[room] > 0 and room not in self.positions:
            self.positions[room], self.seqs[room] = position
            self.wake.set()

    async def leave(self, room: str) -> None:
        self.members[room] -= 1
        if self.members[room] == 0:
            del self.members[room]
            self.starting.pop(room, None)
            self.positions.pop(room, None)
            self.seqs.pop(room, None)

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Add the frame once per message id; the ack names the new entry: {"sid": SID, "seq": N}, or
        nothing when this id was already added (a resend)."""
        payload = json.dumps(frame)
        marker = f"msgid:{room}:{frame['id']}"
        try:
            keys = [self.key(room), marker, f"seq:{room}"]
            added = await self._retry(lambda: self.xadd(keys=keys, args=[self.maxlen, payload]),
                                      deadline=self.PUBLISH_DEADLINE)
        except _redis_errors() + (OSError,) as exc:
            self.stats["publish_failed"] += 1
            raise PublishFailed(str(exc)) from None
        if not added:
            self.stats["publish_deduplicated"] += 1
            return {}
        self.stats["published"] += 1
        sid, n = added
        return {"sid": sid.decode() if isinstance(sid, bytes) else str(sid), "seq": int(n)}

    async def replay(self, room: str, after: str, after_seq: int) -> Replay:
        """Entries of `room` after id `after` (numbered `after_seq`), as frames; and the sequence numbers
        between `after_seq` and the first entry still there, which were trimmed away."""
        entries = await self._retry(lambda: self.redis.xrange(self.key(room), min=f"({after}", max="+"))
        if entries:
            first = int(entries[0][1][b"n"])
        else:
            first = int(await self._retry(lambda: self.redis.get(f"seq:{room}")) or 0) + 1
        self.stats["replayed"] += len(entries)
        frames = [self._frame(sid, fields) for sid, fields in entries]
        return Replay(frames, (after_seq + 1, first - 1) if first - 1 >= after_seq + 1 else None)

    @staticmethod
    def _frame(sid: bytes, fields: dict[bytes, bytes]) -> str:
        frame = json.loads(fields[b"f"])
        frame["sid"], frame["seq"] = sid.decode(), int(fields[b"n"])
        return json.dumps(frame)

    async def _retry(self, call: Any, *, deadline: float = 10.0) -> Any:
        """Retry a Redis call through restarts, pauses and partitions, up to `deadline` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            try:
                result = await call()
                self.mark("redis", True)
                return result
            except _redis_errors() + (OSError,):
                self.mark("redis", False)
                if loop.time() > end:
                    raise
                self.stats["redis_retries"] += 1
                await asyncio.sleep(0.1)

    async def _read(self) -> None:
        """Fan every new entry of every local room out to this replica's members, from the last id read.

        After a read failure (Redis restarting, paused, or unreachable) it resumes from the same ids; if
        trimming removed entries it had not read meanwhile (a jump in the sequence numbers), it says so to
        the room's members.
        """
        failed = False
        while True:
            if not self.positions:
                self.wake.clear()
                await self.wake.wait()
                continue
            streams: dict[Any, Any] = {self.key(room): sid for room, sid in self.positions.items()}
            try:
                batches: Any = await self.redis.xread(streams, block=self.BLOCK_MS, count=500)
            except _redis_errors() + (OSError,) as exc:
                self.mark("reader", False)
                if not failed:
                    self.stats["read_errors"] += 1
                    log.warning("XREAD failed, resuming from the last ids: %r", exc)
                failed = True
                await asyncio.sleep(0.1)
                continue
            failed = False
            self.mark("reader", True)
            for key, entries in batches:
                room = key.decode().split(":", 1)[1]
                for sid, fields in entries:
                    if room not in self.positions:
                        continue
                    n = int(fields[b"n"])
                    if n > self.seqs[room] + 1:
                        lo, hi = self.seqs[room] + 1, n - 1
                        self.stats["trimmed_unread"] += hi - lo + 1
                        log.warning("entries %d..%d of %s were trimmed before this replica read them",
                                    lo, hi, room)
                        self.on_gap(room, lo, hi)
                    self.positions[room], self.seqs[room] = sid.decode(), n
                    self.stats["received"] += 1
                    self.deliver(room, self._frame(sid, fields))
