"""Frames for many connections, written once per event-loop iteration: one write per connection, not one
per frame.

`websockets.broadcast` writes every frame to every connection as it comes: a system call per delivery,
which is most of a replica's CPU under load (a profile of a PubSub replica at 700 msg/s: 31 % in those
writes). Frames that reach a replica together (one read from Redis carries several messages) are framed
at once into each connection's buffer (websockets' sans-I/O protocol) and that buffer is written by one
`transport.write` when the loop comes back to it. Order is kept: a connection's frames leave in the order
they were added, and anything else the connection sends (`ws.send`) goes out after them.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

log = logging.getLogger("wslab.outbox")


class Outbox:
    def __init__(self) -> None:
        self.pending: dict[ServerConnection, None] = {}  # insertion-ordered set
        self.scheduled = False

    def add(self, connections: list[ServerConnection], frame: bytes) -> int:
        """Frame `frame` (UTF-8 JSON) as a text message for each open connection; return how many took it."""
        taken = 0
        for ws in connections:
            if ws.protocol.state is not State.OPEN or ws.send_in_progress is not None:
                continue  # closing, or in the middle of a fragmented send: as broadcast() skips it
            ws.protocol.send_text(frame)
            self.pending[ws] = None
            taken += 1
        if taken and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return taken

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for ws in pending:
            chunks = ws.protocol.data_to_send()
            data = b"".join(chunks)
            try:
                if data:
                    ws.transport.write(data)
                if b"" in chunks:  # the protocol asked for end-of-stream: what send_data() does with it
                    if ws.transport.can_write_eof():
                        ws.transport.write_eof()
                    else:
                        ws.transport.close()
            except Exception as exc:  # noqa: BLE001 - a broken connection is that client's, as in broadcast()
                log.warning("skipped a write to a connection: %r", exc)
