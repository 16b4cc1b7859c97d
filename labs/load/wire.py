"""A WebSocket client connection for gevent: websockets' sans-I/O protocol over a plain (gevent) socket.

A load user reads many small frames a second. websocket-client reads each frame with several small socket
calls; here one `recv` of up to 256 KiB feeds websockets' protocol, which parses every frame in it (and
answers pings itself). Measured on this machine, that takes the generator's CPU per delivery from ~120 µs
to a fraction of it. Writes from two greenlets are serialised by a lock, so frames never interleave.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

READ_BYTES = 256 * 1024


class Closed(ConnectionError):
    pass


class Connection:
    """Open with `Connection(url, timeout)`; `send(text)`; `run(on_text)` reads until the connection ends."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.protocol = ClientProtocol(parse_uri(url), max_size=2**20)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()  # a gevent lock once locust has patched the standard library
        self.pending: list[str] = []  # text frames that came with the handshake's response
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.state is State.CONNECTING:
            data = self.sock.recv(READ_BYTES)
            if not data:
                raise Closed("connection closed during the opening handshake")
            self.protocol.receive_data(data)
            self._take(self.pending.append)
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc
        self.sock.settimeout(None)

    def recv_first(self, timeout: float) -> str:
        """The first text frame (the server's welcome)."""
        self.sock.settimeout(timeout)
        try:
            while not self.pending:
                self._read_once(self.pending.append)
        finally:
            self.sock.settimeout(None)
        return self.pending.pop(0)

    def run(self, on_text: Callable[[str], None]) -> None:
        """Read and hand every text frame to `on_text` until the connection ends (then raise Closed)."""
        for text in self.pending:
            on_text(text)
        self.pending.clear()
        while True:
            self._read_once(on_text)

    def _read_once(self, on_text: Callable[[str], None]) -> None:
        data = self.sock.recv(READ_BYTES)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self._take(on_text)
        self._flush()  # pongs and close frames the protocol queued
        if self.protocol.state is State.CLOSED or not data:
            raise Closed(f"connection closed: {self.protocol.close_code} {self.protocol.close_reason}".strip())

    def _take(self, on_text: Callable[[str], None]) -> None:
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.TEXT and event.fin:
                on_text(bytes(event.data).decode())

    def send(self, text: str) -> None:
        with self.lock:
            self.protocol.send_text(text.encode())
            self._flush_locked()

    def _flush(self) -> None:
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            with self.lock:
                if self.protocol.state is State.OPEN:
                    self.protocol.send_close(1000)
                    self._flush_locked()
        except OSError:
            pass
        finally:
            self.sock.close()
