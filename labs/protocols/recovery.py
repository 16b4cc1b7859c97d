"""Socket.IO connection state recovery on the client's side, as socket.io-client 4.x speaks it (its
lib/socket.ts: `onconnect`, `emitEvent`, `_sendConnectPacket`). Pure: packets' data in, decisions out.

- A server with recovery on answers CONNECT with `{"sid", "pid"}`: `pid` is the private session id.
- It appends an offset (a string) as the last argument of every event it stored for replay. Once the client
  holds a pid, the last argument of every event it receives, when it is a string, is its offset (the event's
  name counts as an argument: an event with no arguments leaves its name as the offset, as socket.io-client
  does).
- Each later CONNECT carries `{"pid", "offset"}` before the client's own auth; an offset never received
  is left out (JSON.stringify drops undefined).
- The session was recovered when the answer's pid is the one the client sent. The server writes the
  packets it replays before its answer: socket.io-client buffers them and handles them after `connect`;
  so does this state (its offset follows them after the answer's pid is taken).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecoveryState:
    """What a client keeps across its connections: the private session id and the last offset."""

    pid: str | None = None
    offset: str | None = None
    #: events received on the current connection before the server's CONNECT answer
    pending: list[list[Any]] = field(default_factory=list)
    connected: bool = False

    def connect_auth(self, own: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The CONNECT packet's data: `{pid, offset}` under the client's own auth once it holds a pid."""
        if not self.pid:
            return own
        session: dict[str, Any] = {"pid": self.pid}
        if self.offset is not None:
            session["offset"] = self.offset
        return {**session, **(own or {})}

    def opening(self) -> None:
        """A new connection begins: nothing received on it yet."""
        self.pending = []
        self.connected = False

    def on_connect(self, data: Any) -> bool:
        """The server's CONNECT answer; whether it recovered the session. Then the events that came before
        it are taken in order, as socket.io-client emits its buffer after `connect`."""
        pid = data.get("pid") if isinstance(data, dict) else None
        pid = pid if isinstance(pid, str) and pid else None
        recovered = pid is not None and pid == self.pid
        self.pid = pid
        self.connected = True
        pending, self.pending = self.pending, []
        for args in pending:
            self._offset_of(args)
        return recovered

    def on_event(self, args: list[Any]) -> None:
        """An EVENT packet's data (its name first, then its arguments)."""
        if not self.connected:
            self.pending.append(args)
        else:
            self._offset_of(args)

    def _offset_of(self, args: list[Any]) -> None:
        if self.pid and args and isinstance(args[-1], str):
            self.offset = args[-1]
