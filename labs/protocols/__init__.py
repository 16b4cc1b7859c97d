"""Protocol adapters: what differs between a plain WebSocket run and a Socket.IO run."""

from __future__ import annotations

from ..scenario import AppKind
from .base import ProtocolAdapter
from .socketio import SocketIOProtocol
from .websocket import WebSocketProtocol

ADAPTERS: dict[AppKind, type[ProtocolAdapter]] = {
    AppKind.WEBSOCKET: WebSocketProtocol,
    AppKind.SOCKETIO: SocketIOProtocol,
}


def for_app(app: AppKind) -> ProtocolAdapter:
    """The adapter for a scenario's `app`."""
    return ADAPTERS[app]()
