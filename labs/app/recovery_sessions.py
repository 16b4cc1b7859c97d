"""Recoverable sessions kept in Redis, not in the replica: one key per pid, written whenever the socket's
rooms or data change, so that the session of a replica that is SIGKILLed is still there for the replica
the client comes back to.

Expiry is Redis's: while its socket is connected the key lives `max_disconnection` + `refresh` seconds and
the replica holding it renews it every `refresh` seconds; when the socket drops for a reason the client
recovers from, the key is left `max_disconnection` seconds; when the client says goodbye (or is sent
away), it is deleted. A replica that dies renews nothing: its sessions live between `max_disconnection`
and `max_disconnection` + `refresh` seconds after its death.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from .recovery import Session, decode_session, encode_session

log = logging.getLogger("wslab.sio.recovery")
PREFIX = "sio:session:"

# Write the session (ARGV[2]; "" deletes it, "=" keeps it) with a time to live of ARGV[3] ms, only when the
# stored one is held by ARGV[1] (or there is none): a connection that a newer one recovered from must not
# write over it. Returns 1 when written.
HELD_WRITE = """
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['holder'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
elseif ARGV[2] == '=' then if cur then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


def new_token() -> str:
    """A pid or a holder token: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


class SessionStore:
    def __init__(self, redis: Any, *, max_disconnection: float, refresh: float = 1.0) -> None:
        self.redis = redis
        self.max_disconnection, self.refresh = max_disconnection, refresh
        self.write_held = redis.register_script(HELD_WRITE)
        #: the sessions of this replica's connected sockets, by sid
        self.held: dict[str, Session] = {}
        self.task: asyncio.Task[None] | None = None

    @staticmethod
    def key(pid: str) -> str:
        return PREFIX + pid

    @property
    def connected_ttl_ms(self) -> int:
        return int((self.max_disconnection + self.refresh) * 1000)

    async def _write(self, session: Session, value: str, ttl_ms: int, *, holder: str | None = None) -> bool:
        keys = [self.key(session.pid)]
        return bool(await self.write_held(keys=keys, args=[session.holder if holder is None else holder,
                                                          value, ttl_ms]))

    async def begin(self, sid: str, since: str) -> Session:
        """A new session for socket `sid`, stored before its client learns the pid."""
        session = Session(sid, new_token(), (), {}, new_token(), since)
        await self._write(session, encode_session(session), self.connected_ttl_ms)
        self.held[sid] = session
        return session

    async def peek(self, pid: str) -> Session | None:
        """The stored session of `pid`; None when there is none (it expired, ended, or never was)."""
        text = await self.redis.get(self.key(pid))
        if text is None:
            return None
        try:
            return decode_session(text)
        except ValueError as exc:
            log.warning("session %s is unreadable: %s", pid[:6], exc)
            return None

    async def claim(self, session: Session) -> Session | None:
        """Take `session` over for a new connection; None when another took it first or it ended."""
        mine = Session(session.sid, session.pid, session.rooms, session.data, new_token(), session.since)
        if not await self._write(mine, encode_session(mine), self.connected_ttl_ms, holder=session.holder):
            return None
        self.held[mine.sid] = mine
        return mine

    async def update(self, sid: str, *, rooms: tuple[str, ...] | None = None,
                     data: dict[str, Any] | None = None) -> None:
        """Store a held session's new rooms or data."""
        old = self.held.get(sid)
        if old is None:
            return
        new = Session(old.sid, old.pid, old.rooms if rooms is None else rooms, old.data if data is None else data,
                      old.holder, old.since)
        self.held[sid] = new
        if not await self._write(new, encode_session(new), self.connected_ttl_ms):
            self.held.pop(sid, None)  # a newer connection recovered it: that one holds it now

    async def end(self, sid: str, *, recoverable: bool) -> None:
        """The socket is gone: keep its session `max_disconnection` s for its client, or delete it."""
        session = self.held.pop(sid, None)
        if session is not None:
            await self._write(session, "=" if recoverable else "", int(self.max_disconnection * 1000))

    def forget(self, sid: str) -> None:
        """Stop holding the session of a socket that never completed its connect."""
        self.held.pop(sid, None)

    async def renew(self) -> None:
        """Every `refresh` s, renew the time to live of every held session (one pipeline)."""
        while True:
            await asyncio.sleep(self.refresh)
            if not self.held:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for session in list(self.held.values()):
                        pipe.pexpire(self.key(session.pid), self.connected_ttl_ms)
                    await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - the next round tries again; sessions live D + refresh
                log.warning("renewing %d sessions failed: %r", len(self.held), exc)

    def start(self) -> None:
        self.task = asyncio.create_task(self.renew())
