"""The app replica: what runs inside each app container (standalone: imports nothing from the harness).

Both replicas (the WebSocket server and the Socket.IO one) share what a chat message is: `check_message`.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BODY = 65536


class InvalidMessage(ValueError):
    """A decoded message that is not {"id": ID, "ts": NUMBER?, "body": TEXT?}; the text says why."""


@dataclass(frozen=True)
class Message:
    id: str
    ts: float | int | None
    body: str


def check_message(obj: Any) -> Message:
    """Validate a decoded client message: an object whose `id` is a string matching ID_RE or a
    non-negative integer (relayed as its decimal string), whose `ts`, if present, is a finite number, and
    whose `body`, if present, is a string of at most MAX_BODY characters. Other keys are ignored."""
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message must be a JSON object, not {_kind(obj)}")
    if "id" not in obj:
        raise InvalidMessage("message has no id")
    raw = obj["id"]
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        msg_id = str(raw)
    elif isinstance(raw, str):
        msg_id = raw
    else:
        raise InvalidMessage(f"id must be a string or a non-negative integer, not {_kind(raw)}")
    if not ID_RE.match(msg_id):
        raise InvalidMessage("id must match [A-Za-z0-9_-]{1,64}")
    ts = obj.get("ts")
    if "ts" in obj:
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise InvalidMessage(f"ts must be a finite number, not {_kind(ts)}")
    body = obj.get("body", "")
    if not isinstance(body, str):
        raise InvalidMessage(f"body must be a string, not {_kind(body)}")
    if len(body) > MAX_BODY:
        raise InvalidMessage(f"body is longer than {MAX_BODY} characters")
    return Message(msg_id, ts, body)


def _kind(value: Any) -> str:
    """A JSON type name for error messages (never the value itself: it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number" if not isinstance(value, float) or math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the replica's event loop: uvloop when it is installed (~1.5x faster here), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
