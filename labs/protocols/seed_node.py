"""The seed article's own Node servers (images/node/) as app kinds: the same clients, the same checker.

`seed-node-ws` is the article's `ws` + node-redis server (seed-ws.mjs). Its clients are the lab's
WebSocket clients; the server adds only a welcome naming the replica and an ack per publish, and relays the
client's frame itself, unchanged, to every connection of the room on its server, the sender's own included.
So a client sends its name in its frame, and a relayed frame that names it is its own copy coming back,
which is not a delivery (the ack already said Redis has the message).

`seed-node-socketio` is the article's socket.io + @socket.io/redis-adapter server (seed-socketio.mjs),
driven by the lab's Socket.IO clients with the article's events (the lab's python-socketio replica takes
those too: scenarios/socketio-article-events.toml). With broker `redis-streams` the same server runs
@socket.io/redis-streams-adapter with connection state recovery on (its `maxLen` the topology's `maxlen`,
its `maxDisconnectionDuration` the topology's `max_disconnection_duration`); the classic adapter is the
control that recovers nothing.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..accounting.history import History
from ..errors import ImageError
from ..infra.images import Image, ImageSet
from ..scenario import NODE_BROKERS, AppKind, Broker, Scenario
from .base import Link, LinkDown, Outcome, Sink
from .socketio import SocketIOProtocol
from .websocket import WebSocketLink, WebSocketProtocol

#: where the image puts the servers (images/node/Dockerfile)
NODE_DIR = "/opt/wslab-node"


def node_image(images: ImageSet) -> Image:
    """The node image, or ImageError saying why it is missing."""
    if images.node is None:
        raise ImageError(f"the node image is missing ({images.node_error or 'not built'}); run `make images`")
    return images.node


class SeedNodeWsLink(WebSocketLink):
    """A lab WebSocket client for the article's server: every relayed frame is a client's own JSON."""

    async def send(self, msg_id: str, ts: float, body: str) -> None:
        ws = self.ws
        if ws is None:
            raise LinkDown(self.name)
        try:
            await ws.send(json.dumps({"id": msg_id, "ts": ts, "body": body, "sender": self.name}))
        except ConnectionClosed:
            raise LinkDown(self.name) from None

    def _frame(self, frame: dict[str, Any]) -> None:
        if "type" in frame:  # the lab's additions: welcome, ack
            super()._frame(frame)
        elif "id" in frame and frame.get("sender") != self.name:
            self.sink.on_message(str(frame["id"]), "", None)


class SeedNodeWsProtocol(WebSocketProtocol):
    app = AppKind.SEED_NODE_WS
    app_module = "seed-ws.mjs"

    def replica_args(self, scenario: Scenario) -> tuple[str, ...]:
        return ()

    def replica_command(self) -> tuple[str, ...]:
        return ("node", f"{NODE_DIR}/{self.app_module}")

    def replica_image(self, images: ImageSet) -> Image:
        return node_image(images)

    def link(self, name: str, index: int, sink: Sink, *, port: int, scenario: Scenario,
             history: History, host: str = "127.0.0.1") -> Link:
        return SeedNodeWsLink(name, host=host, port=port, room=scenario.workload.room, sink=sink)

    def columns(self, outcome: Outcome) -> dict[str, str]:
        cells = super().columns(outcome)
        subscribe = NODE_BROKERS[AppKind.SEED_NODE_WS][outcome.scenario.topology.broker]
        return {"server": f"article's ws + node-redis: {subscribe}", **cells}

    def kind(self, outcome: Outcome) -> str:
        return "seed-node ws under faults" if outcome.scenario.faults else "seed-node ws"


class SeedNodeSocketIOProtocol(SocketIOProtocol):
    app = AppKind.SEED_NODE_SOCKETIO
    app_module = "seed-socketio.mjs"

    def replica_args(self, scenario: Scenario) -> tuple[str, ...]:
        """With the Streams adapter: its `maxLen`, and how long a session is kept for recovery (in ms)."""
        top = scenario.topology
        if top.broker is not Broker.REDIS_STREAMS:
            return ()
        return ("--maxlen", str(top.maxlen),
                "--max-disconnection-ms", str(max(1, round(top.max_disconnection_duration * 1000))))

    def replica_command(self) -> tuple[str, ...]:
        return ("node", f"{NODE_DIR}/{self.app_module}")

    def replica_image(self, images: ImageSet) -> Image:
        return node_image(images)

    def columns(self, outcome: Outcome) -> dict[str, str]:
        cells = super().columns(outcome)
        cells["manager"] = NODE_BROKERS[AppKind.SEED_NODE_SOCKETIO][outcome.scenario.topology.broker]
        verdict = cells.pop("failover (killed replica)")
        cells["unhandled rejections (the article's code exits)"] = str(
            outcome.history.probes.get("unhandled_rejections", 0))
        return {"server": "article's socket.io", **cells, "failover (killed replica)": verdict}

    def kind(self, outcome: Outcome) -> str:
        return "seed-node Socket.IO"

    def to_json(self, outcome: Outcome) -> dict[str, Any]:
        out = super().to_json(outcome)
        out["socketio"].update(app="article's socket.io (Node)",
                               manager=self.columns(outcome)["manager"])
        return out
