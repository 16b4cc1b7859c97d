"""Frames for many connections: each message framed once, and written once per connection per event-loop
iteration.

`websockets.broadcast` frames every message again for every connection and writes it at once: a frame
object and a system call per delivery, which were most of a replica's CPU under load (a profile of a PubSub
replica at 700 msg/s: 31 % in those writes). A server's frames are not masked, so one message's frame is the
same bytes for every connection: the outbox serializes it once, queues those bytes for each member, and
writes each connection's queue with one `transport.write` when the loop comes back to it (a read from
Redis that carries several messages becomes one write per member).

websockets writes what its protocol queues (pings, pongs, `ws.send`) as soon as it queues it, so the
outbox's bytes only ever land between whole frames; the server calls `write_now(ws)` before its own
`ws.send`, so a connection's frames leave in the order they were made. A connection that stopped being open before its turn
(its client is closing) gets nothing more: no data frame may follow a close frame.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

log = logging.getLogger("wslab.outbox")


def text_frame(payload: bytes) -> bytes:
    """A whole unmasked text frame: what a server sends, the same for every connection."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class Outbox:
    def __init__(self) -> None:
        self.pending: dict[ServerConnection, list[bytes]] = {}
        self.scheduled = False

    def add(self, connections: list[ServerConnection], frame: bytes) -> int:
        """Queue `frame` (a whole frame, from `text_frame`) for each open connection; return how many took it."""
        taken = 0
        for ws in connections:
            if ws.protocol.state is not State.OPEN or ws.send_in_progress is not None:
                continue  # closing, or in the middle of a fragmented send: as broadcast() skips it
            queue = self.pending.get(ws)
            if queue is None:
                self.pending[ws] = [frame]
            else:
                queue.append(frame)
            taken += 1
        if taken and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return taken

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for ws, frames in pending.items():
            _write(ws, frames)

    def write_now(self, ws: ServerConnection) -> None:
        """Write what is queued for `ws` now: call it before sending to `ws` any other way (`ws.send`), so
        that what was queued first leaves first."""
        frames = self.pending.pop(ws, None)
        if frames:
            _write(ws, frames)


def _write(ws: ServerConnection, frames: list[bytes]) -> None:
    if ws.protocol.state is not State.OPEN:
        return
    try:
        ws.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
    except Exception as exc:  # noqa: BLE001 - a broken connection is that client's, as in broadcast()
        log.warning("skipped a write to a connection: %r", exc)
