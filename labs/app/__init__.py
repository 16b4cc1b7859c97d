"""The app replica: what runs inside each app container (standalone: imports nothing from the harness)."""

import asyncio
from typing import Any, Coroutine


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the replica's event loop: uvloop when it is installed (~1.5x faster here), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
