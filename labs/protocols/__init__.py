"""Protocol adapters: what differs between a plain WebSocket run, a Socket.IO run, and runs of the seed
article's own Node servers."""

from __future__ import annotations

from ..scenario import AppKind
from .base import ProtocolAdapter
from .seed_node import SeedNodeSocketIOProtocol, SeedNodeWsProtocol
from .socketio import SocketIOProtocol
from .websocket import WebSocketProtocol

ADAPTERS: dict[AppKind, type[ProtocolAdapter]] = {
    AppKind.WEBSOCKET: WebSocketProtocol,
    AppKind.SOCKETIO: SocketIOProtocol,
    AppKind.SEED_NODE_WS: SeedNodeWsProtocol,
    AppKind.SEED_NODE_SOCKETIO: SeedNodeSocketIOProtocol,
}


def for_app(app: AppKind) -> ProtocolAdapter:
    """The adapter for a scenario's `app`."""
    return ADAPTERS[app]()
