"""Which master owns each slot of a Redis Cluster, as a replica sees it (sharded Pub/Sub's routing)."""

from __future__ import annotations

import asyncio
from typing import Any

SLOTS = 16384
Address = tuple[str, int]


def parse_slots(reply: Any) -> list[tuple[int, int, Address]]:
    """`CLUSTER SLOTS` as (first, last, master address) per range: each entry is [first, last, [host, port,
    id, ...], replicas...]; the host is the node's announced name (cluster-preferred-endpoint-type hostname)."""
    out = []
    for entry in reply:
        first, last, master = int(entry[0]), int(entry[1]), entry[2]
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        out.append((first, last, (host, int(master[1]))))
    return out


class SlotMap:
    """Which master owns each slot, from `CLUSTER SLOTS`, and one command client per master.

    A node that failed a connection is `down` for DOWN_FOR s: nobody connects to it meanwhile (a killed
    node's address stays in Docker's DNS and a connect to it only times out), so the publishes and
    subscribes waiting for its slots' new owner cost nothing but a refresh, at most one per MIN_REFRESH s.
    """

    DOWN_FOR = 1.0
    MIN_REFRESH = 0.1

    def __init__(self, seeds: list[Address], *, name: str) -> None:
        self.name = name
        self.known: list[Address] = list(seeds)
        self.owner: list[Address | None] = [None] * SLOTS
        self.clients: dict[Address, Any] = {}
        self.lock = asyncio.Lock()
        self.generation = 0
        self.refreshed = 0.0
        self.down: dict[Address, float] = {}

    def failed(self, address: Address) -> None:
        self.down[address] = asyncio.get_running_loop().time()

    def is_down(self, address: Address) -> bool:
        at = self.down.get(address)
        return at is not None and asyncio.get_running_loop().time() - at < self.DOWN_FOR

    def client(self, address: Address) -> Any:
        """A command client for one node: short timeouts, no retry of its own, waits for a free connection."""
        if address not in self.clients:
            import redis.asyncio as redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = redis.BlockingConnectionPool(host=address[0], port=address[1], max_connections=64, timeout=5.0,
                                                socket_timeout=2.0, socket_connect_timeout=2.0,
                                                client_name=self.name or None, retry=Retry(NoBackoff(), 0))
            self.clients[address] = redis.Redis(connection_pool=pool)
        return self.clients[address]

    def covered(self) -> bool:
        return all(o is not None for o in self.owner)

    def owner_of(self, channel: str) -> Address | None:
        from redis.crc import key_slot

        return self.owner[key_slot(channel.encode())]

    def moved(self, slot: int, address: Address) -> None:
        self.owner[slot] = address
        if address not in self.known:
            self.known.append(address)

    async def refresh(self) -> None:
        """Ask every known node that is not down for `CLUSTER SLOTS` at once and take the first full
        answer; nothing when the last refresh ended less than MIN_REFRESH s ago."""
        loop = asyncio.get_running_loop()
        async with self.lock:
            if loop.time() - self.refreshed < self.MIN_REFRESH:
                return
            errors = []

            async def ask(address: Address) -> list[tuple[int, int, Address]]:
                return parse_slots(await self.client(address).execute_command("CLUSTER", "SLOTS"))

            asking = [a for a in self.known if not self.is_down(a)] or list(self.known)
            asks = [asyncio.ensure_future(ask(a)) for a in asking]
            try:
                for done in asyncio.as_completed(asks):
                    try:
                        ranges = await done
                    except Exception as exc:  # noqa: BLE001 - wait for another node's answer
                        errors.append(repr(exc))
                        continue
                    if not ranges:
                        errors.append("no slots assigned yet")
                        continue
                    self._take(ranges)
                    return
            finally:
                for pending in asks:
                    pending.cancel()
                await asyncio.gather(*asks, return_exceptions=True)
                self.refreshed = loop.time()
            raise ConnectionError("no node gave the slot map: " + "; ".join(errors))

    def _take(self, ranges: list[tuple[int, int, Address]]) -> None:
        owner: list[Address | None] = [None] * SLOTS
        for first, last, master in ranges:
            owner[first:last + 1] = [master] * (last - first + 1)
            if master not in self.known:
                self.known.append(master)
        self.owner = owner
        self.generation += 1

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients.values()), return_exceptions=True)
