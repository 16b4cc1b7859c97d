"""Socket.IO connection state recovery, the pure part: offsets, sessions and logged packets as text.

The wire behaviour is socket.io's (4.6+), which the official socket.io-client expects:
- the CONNECT packet the server sends carries {"sid": SID, "pid": PID}: PID is a private session id;
- every event the server emits to the client carries an offset as its last argument (the client keeps the
  last one it saw, if it is a string);
- on reconnect the client's CONNECT carries {"pid": PID, "offset": OFFSET} beside its own auth (no offset
  when it never got an event); the server answers with the same sid and pid, so the client's `recovered`
  is true (socket.io-client: `recovered = pid && this._pid === pid`), then sends the packets it missed.

Here an offset is the id of a Redis stream entry, the stream being the log every replica fans out from,
and a session is a JSON document in Redis under its pid. The ids are dense: entry n is "<n>-0" (the emits
are numbered as they are added), so what trimming took is known exactly: entries after offset n are all
still there as long as the oldest one left is at most n + 1. (Redis's own max-deleted-entry-id counts
XDEL only, not trimming.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: a private session id: what `new_pid` makes (22 URL-safe characters), at most 64 accepted
PID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: a Redis stream entry id, as XADD makes it
OFFSET_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$")
#: a room or a sid (python-socketio's sids are 20 URL-safe characters)
NAME_RE = re.compile(r"^[^\x00-\x1f]{1,256}$")
#: the position before every entry
ORIGIN = "0-0"
#: python-socketio's disconnect reasons after which the client comes back by itself with its pid (socket.io's
#: RECOVERABLE_DISCONNECT_REASONS, less those python-socketio does not have); a client that said goodbye or a
#: server that sent it away does not
RECOVERABLE = frozenset({"transport close", "transport error", "ping timeout"})


class BadRecovery(ValueError):
    """A CONNECT whose pid or offset is not one this server could have issued; the text says which."""


def parse_offset(offset: str) -> tuple[int, int]:
    """"<ms>-<seq>" -> (ms, seq); ValueError for anything else."""
    m = OFFSET_RE.match(offset)
    if not m:
        raise ValueError(f"offset {offset[:40]!r} is not a stream entry id <ms>-<seq>")
    return int(m[1]), int(m[2])


def later(a: str, b: str) -> bool:
    """Whether entry id `a` comes after entry id `b`."""
    return parse_offset(a) > parse_offset(b)


def entry_id(n: int) -> str:
    """The id of the n-th entry ever added."""
    return f"{n}-0"


def entry_number(offset: str) -> int:
    """n of the dense entry id "<n>-0"; ValueError for an id that is not one."""
    n, seq = parse_offset(offset)
    if seq != 0:
        raise ValueError(f"offset {offset} is not an entry this stream numbers (<n>-0)")
    return n


def gap_free(position: str, oldest: str | None) -> bool:
    """Whether every entry after `position` is still in the stream, given the oldest entry left (None: the
    stream is empty or absent). Trimming removes the oldest entries first, and entry n + 1 follows n."""
    return oldest is None or entry_number(oldest) <= entry_number(position) + 1


@dataclass(frozen=True)
class RecoveryRequest:
    pid: str
    #: the last offset the client saw; None when it never got an event
    offset: str | None


def recovery_request(auth: Any) -> RecoveryRequest | None:
    """The pid and offset in a CONNECT's auth; None when it asks for no recovery (no pid). BadRecovery when
    it carries a pid or offset no server of this kind issues."""
    if not isinstance(auth, dict) or "pid" not in auth:
        return None
    pid, offset = auth["pid"], auth.get("offset")
    if not (isinstance(pid, str) and PID_RE.match(pid)):
        raise BadRecovery("pid must be a string of 16-64 characters [A-Za-z0-9_-]")
    if offset is not None and not (isinstance(offset, str) and OFFSET_RE.match(offset) and offset.endswith("-0")):
        raise BadRecovery("offset must be a stream entry id <n>-0")
    return RecoveryRequest(pid, offset)


@dataclass(frozen=True)
class Session:
    """What a reconnecting client gets back, kept in Redis under its pid."""

    sid: str
    pid: str
    #: the rooms it was in, its own sid room and the namespace aside
    rooms: tuple[str, ...]
    #: python-socketio's per-socket session (`save_session`), JSON only
    data: dict[str, Any] = field(default_factory=dict)
    #: which connection holds it now: only the holder updates or ends it (a connection that a later one
    #: recovered from is not told, and must not write over the newer state)
    holder: str = ""
    #: the stream position when the session began: where a client that never got an event replays from
    since: str = ORIGIN


def encode_session(session: Session) -> str:
    return json.dumps({"sid": session.sid, "pid": session.pid, "rooms": list(session.rooms), "data": session.data,
                       "holder": session.holder, "since": session.since}, separators=(",", ":"))


def decode_session(text: str | bytes) -> Session:
    """The session stored as `text`; ValueError when it is not one `encode_session` wrote."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("a session is a JSON object")
    sid, pid, rooms, data = obj.get("sid"), obj.get("pid"), obj.get("rooms"), obj.get("data")
    holder, since = obj.get("holder"), obj.get("since")
    if not (isinstance(sid, str) and NAME_RE.match(sid)):
        raise ValueError("session sid must be a non-empty string")
    if not (isinstance(pid, str) and PID_RE.match(pid)):
        raise ValueError("session pid must be a pid")
    if not (isinstance(rooms, list) and all(isinstance(r, str) and NAME_RE.match(r) for r in rooms)):
        raise ValueError("session rooms must be a list of room names")
    if not isinstance(data, dict) or not isinstance(holder, str):
        raise ValueError("session data must be an object and its holder a string")
    if not (isinstance(since, str) and OFFSET_RE.match(since)):
        raise ValueError("session since must be a stream entry id")
    return Session(sid, pid, tuple(rooms), data, holder, since)


@dataclass(frozen=True)
class Logged:
    """An emit as the stream keeps it: its namespace, [event, *args], the rooms it went to (None: the whole
    namespace) and the sids it skipped."""

    namespace: str
    data: tuple[Any, ...]
    rooms: tuple[str, ...] | None
    skip: tuple[str, ...] = ()

    def addressed(self, sid: str, rooms: tuple[str, ...] | frozenset[str]) -> bool:
        """Whether a socket `sid` in `rooms` gets it (socket.io-adapter's shouldIncludePacket: the packet
        went to the namespace or to one of its rooms, its own sid room included, and did not skip it)."""
        if sid in self.skip:
            return False
        return self.rooms is None or sid in self.rooms or any(r in self.rooms for r in rooms)

    def with_offset(self, offset: str) -> list[Any]:
        """The event's data as the client gets it: the offset appended as its last argument."""
        return [*self.data, offset]


def encode_logged(logged: Logged) -> str:
    return json.dumps({"ns": logged.namespace, "d": list(logged.data),
                       "r": None if logged.rooms is None else list(logged.rooms), "x": list(logged.skip)},
                      separators=(",", ":"))


def decode_logged(text: str | bytes) -> Logged:
    """The emit stored as `text`; ValueError when it is not one `encode_logged` wrote."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("a logged packet is a JSON object")
    ns, data, rooms, skip = obj.get("ns"), obj.get("d"), obj.get("r"), obj.get("x")
    if not isinstance(ns, str) or not (isinstance(data, list) and data and isinstance(data[0], str)):
        raise ValueError("a logged packet has a namespace and [event, *args]")
    if rooms is not None and not (isinstance(rooms, list) and all(isinstance(r, str) for r in rooms)):
        raise ValueError("a logged packet's rooms are null or a list of names")
    if not (isinstance(skip, list) and all(isinstance(s, str) for s in skip)):
        raise ValueError("a logged packet's skipped sids are a list")
    return Logged(ns, tuple(data), None if rooms is None else tuple(rooms), tuple(skip))
