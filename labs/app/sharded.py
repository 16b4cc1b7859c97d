"""Sharded Pub/Sub over a Redis Cluster (Redis 7: SPUBLISH/SSUBSCRIBE).

`RedisClusterSharded` keeps its own slot map (`slots.SlotMap`: `CLUSTER SLOTS`, refreshed on MOVED,
CLUSTERDOWN or a lost node), SPUBLISHes each room to the master that owns its slot, and SSUBSCRIBEs there:
one subscriber connection per master it needs (`Shard`), each with its own reader task and heartbeat.

What redis-py 8.1 offers, and why this does not use it:
- `redis.asyncio.cluster.ClusterPubSub` has `ssubscribe` and re-homes shard channels after a slots-cache
  refresh, but it reads its per-node connections in turn with `get_sharded_message(timeout=...)`: a
  timeout of 0 spins a core, a timeout t makes a message on one node wait behind up to t on each of the
  others; its re-homing runs only when some command of the same client hits MOVED or a connection error,
  and nothing notices a subscriber connection that went silent.
- `RedisCluster.spublish` routes by slot and follows MOVED, but under a killed master (measured here) its
  retries stack up: each attempt retries inside the node's own connection, then the cluster client retries
  with backoff and, on CLUSTERDOWN, closes the whole client under the other publishes in flight; a
  replica's publishes were held for many seconds and some never completed. Here a publish goes to the slot
  map's owner with no hidden retry, and on failure refreshes the map (at most one refresh per 0.1 s for
  all publishes) and tries again every RETRY s until PUBLISH_TIMEOUT.
Each node's subscriber connection has a reader that blocks on its socket and a PING every HEARTBEAT s
that must be answered within DEAF_AFTER s; a loss moves that node's channels to their new owners at once,
refreshing the map until the cluster names one that answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from .brokers import Deliver, NoBroker, PublishFailed, _redis_errors
from .cluster import node_urls
from .slots import Address, SlotMap

log = logging.getLogger("wslab.cluster")


class Shard:
    """One subscriber connection to one master: SSUBSCRIBE there, read it, PING it."""

    def __init__(self, broker: RedisClusterSharded, node: Address) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.broker, self.node = broker, node
        self.label = f"{node[0]}:{node[1]}"
        # No retries: redis-py would reconnect this connection by itself and subscribe again on the same
        # node (which, after a failover, no longer owns the slots), racing our reader for the socket. A
        # failure here must reach `lost`, which moves the channels to their new owner.
        self.client = redis.Redis(host=node[0], port=node[1], socket_timeout=2.0, socket_connect_timeout=2.0,
                                  client_name=broker.name or None, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        self.heard = asyncio.get_running_loop().time()
        self.reader: asyncio.Task[None] | None = None
        self.pinger: asyncio.Task[None] | None = None
        self.dead = False
        #: one command at a time: redis-py's PubSub opens its connection on the first command, and two
        #: first commands at once would each open one (the reader reads only the last)
        self.lock = asyncio.Lock()

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        async with self.lock:
            await self.pubsub.ssubscribe(channel)
        if self.reader is None or self.reader.done():  # listen() ends when nothing is subscribed
            self.reader = asyncio.create_task(self._read())
            self.pinger = asyncio.create_task(self._ping())

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        async with self.lock:
            await self.pubsub.sunsubscribe(channel)

    async def _read(self) -> None:
        try:
            async for message in self.pubsub.listen():
                self._handle(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: this node is gone for us
            self.broker.lost(self, f"reader: {exc!r}")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        loop = asyncio.get_running_loop()
        if kind == "pong":
            self.heard = loop.time()
            return
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        if kind == "ssubscribe":
            self.heard = loop.time()
            self.broker.subscribed(channel)
        elif kind == "smessage":
            self.heard = loop.time()
            self.broker.received(channel, message["data"].decode())
        elif kind == "sunsubscribe" and channel in self.channels:
            # Redis unsubscribed us itself: the slot left this node (a migration, or it became a replica)
            self.channels.discard(channel)
            self.broker.orphaned([channel], f"{self.label} dropped {channel}")

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.broker.HEARTBEAT)
            if not self.channels:  # nothing subscribed: a PONG would come back as a reply nobody reads
                self.heard = loop.time()
                continue
            try:
                async with self.lock:
                    await self.pubsub.ping()
            except Exception as exc:  # noqa: BLE001
                self.broker.lost(self, f"ping: {exc!r}")
                return
            if loop.time() - self.heard > self.broker.DEAF_AFTER:
                self.broker.lost(self, f"no answer for {loop.time() - self.heard:.1f}s")
                return

    async def close(self) -> None:
        self.dead = True
        current = asyncio.current_task()
        tasks = [t for t in (self.reader, self.pinger) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for closing in (self.pubsub.aclose(), self.client.aclose()):
            try:
                await asyncio.wait_for(closing, 1.0)
            except Exception:  # noqa: BLE001 - the node may be gone
                pass


class RedisClusterSharded(NoBroker):
    """SPUBLISH/SSUBSCRIBE: each room's channel `chat:<room>` lives on the master owning its slot.

    A client is told it joined only once the owner confirmed the SSUBSCRIBE. When the connection to a
    master is lost (its reader fails, or PINGs go unanswered for DEAF_AFTER s) or Redis unsubscribes a
    channel itself, the channels it held are orphaned: the part "subscriber" is marked broken, and a
    re-homing task refreshes the slot map and subscribes each orphan on the master that owns it now, every
    RETRY s, until all are confirmed; then "subscriber" is marked working again. The harness reads those
    two marks as the time to resubscribe.
    """

    HEARTBEAT = 0.25
    #: a killed node closes its sockets (the reader fails at once); this catches a node gone silent. Not
    #: shorter: a PONG queues behind every message still unread, and a busy replica reads late.
    DEAF_AFTER = 3.0
    RETRY = 0.1
    #: how long a publish keeps trying (a failover here takes ~2-3 s: node timeout 1 s, then the election;
    #: on a busy host a burst of new connections can take seconds too)
    PUBLISH_TIMEOUT = 8.0

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        from urllib.parse import urlsplit

        super().__init__(redis_url, name=name)
        seeds = [(urlsplit(u).hostname or "localhost", urlsplit(u).port or 6379) for u in node_urls(redis_url)]
        self.slots = SlotMap(seeds, name=name)
        self.members: Counter[str] = Counter()
        self.confirmed: dict[str, asyncio.Event] = {}
        #: master address -> its subscriber connection
        self.shards: dict[Address, Shard] = {}
        self.orphans: set[str] = set()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver
        await self._await_cluster()
        self.tasks.append(asyncio.create_task(self._rehome()))

    async def _await_cluster(self, timeout: float = 30.0) -> None:
        """The lab forms the cluster after its nodes start: retry until the slot map covers every slot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.slots.refresh()
                if self.slots.covered():
                    return
            except ConnectionError:
                pass
            if loop.time() > deadline:
                raise ConnectionError(f"the cluster did not cover every slot within {timeout:g}s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self.shards.values())), return_exceptions=True)
        await self.slots.close()

    def channel(self, room: str) -> str:
        return f"chat:{room}"

    # -- membership ----------------------------------------------------------------------------------

    async def join(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] += 1
        if self.members[channel] == 1:
            self.confirmed[channel] = asyncio.Event()
            await self._home(channel)
        await self.confirmed[channel].wait()

    async def leave(self, room: str) -> None:
        channel = self.channel(room)
        self.members[channel] -= 1
        if self.members[channel] > 0:
            return
        del self.members[channel]
        self.confirmed.pop(channel, None)
        self.orphans.discard(channel)
        for shard in self.shards.values():
            if channel in shard.channels:
                try:
                    await shard.unsubscribe(channel)
                except _redis_errors() + (OSError,):
                    pass  # that node is being replaced; its channels are re-homed from `confirmed`

    async def _home(self, channel: str) -> None:
        """SSUBSCRIBE `channel` on the master the slot map names; an orphan on failure."""
        node = self.slots.owner_of(channel)
        if node is None or self.slots.is_down(node):
            self.orphaned([channel], f"{node} owns {channel} and is down or unknown")
            return
        shard = self.shards.get(node)
        if shard is None or shard.dead:
            shard = self.shards[node] = Shard(self, node)
        try:
            await shard.subscribe(channel)
        except Exception as exc:  # noqa: BLE001 - the re-homing task refreshes the map and tries again
            log.info("subscribe %s on %s failed: %r", channel, shard.label, exc)
            self.slots.failed(node)
            self.lost(shard, f"subscribe {channel}: {exc!r}")  # a fresh connection next time
            self.orphaned([channel], f"subscribe {channel}: {exc!r}")

    # -- what shards report --------------------------------------------------------------------------

    def subscribed(self, channel: str) -> None:
        if channel in self.confirmed:
            self.confirmed[channel].set()

    def received(self, channel: str, data: str) -> None:
        if channel.startswith("chat:"):
            self.stats["received"] += 1
            self.deliver(channel.split(":", 1)[1], data)

    def lost(self, shard: Shard, why: str) -> None:
        """A master stopped answering: drop its connection, orphan its channels."""
        if shard.dead:
            return
        shard.dead = True
        if self.shards.get(shard.node) is shard:
            del self.shards[shard.node]
        self.stats["shards_lost"] += 1
        self.slots.failed(shard.node)
        log.warning("lost %s (%s): re-homing %d channel(s)", shard.label, why, len(shard.channels))
        asyncio.get_running_loop().create_task(shard.close())
        self.orphaned(list(shard.channels), why)

    def orphaned(self, channels: list[str], why: str) -> None:
        wanted = [c for c in channels if c in self.confirmed]
        if not wanted:
            return
        for channel in wanted:
            self.confirmed[channel].clear()
        self.orphans.update(wanted)
        self.mark("subscriber", False)
        self.wake.set()

    async def _rehome(self) -> None:
        """Subscribe every orphan on its slot's current owner, refreshing the slot map between tries."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.orphans:
                try:
                    await self.slots.refresh()
                except ConnectionError as exc:
                    log.warning("slot map refresh failed: %s", exc)
                tried = sorted(self.orphans)
                self.orphans.clear()
                owners = Counter(str(self.slots.owner_of(c)) for c in tried)
                log.info("re-homing %d channel(s) (map %d): %s", len(tried), self.slots.generation, dict(owners))
                await asyncio.gather(*(self._home(c) for c in tried))
                # wait for the confirmations of the subscribes that went out (a failed one is an orphan again)
                sent = [c for c in tried if c not in self.orphans and c in self.confirmed]
                try:
                    await asyncio.wait_for(asyncio.gather(*(self.confirmed[c].wait() for c in sent)), 1.0)
                except TimeoutError:
                    self.orphans.update(c for c in sent if c in self.confirmed and not self.confirmed[c].is_set())
                if self.orphans:
                    await asyncio.sleep(self.RETRY)
            self.stats["rehomed"] += 1
            self.mark("subscriber", True)

    # -- publishing ----------------------------------------------------------------------------------

    async def publish(self, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        """SPUBLISH on the slot's owner; on MOVED go where it says, on any other failure refresh the map;
        give up after PUBLISH_TIMEOUT s. A timed-out attempt may have been published: a retry can then
        deliver it twice."""
        from redis.crc import key_slot
        from redis.exceptions import ClusterDownError, MovedError, TryAgainError
        from redis.exceptions import TimeoutError as RedisTimeout

        channel, payload = self.channel(room), json.dumps(frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.PUBLISH_TIMEOUT
        failure: BaseException | None = None
        while True:
            node = self.slots.owner_of(channel)
            if node is not None and not self.slots.is_down(node):
                try:
                    await self.slots.client(node).spublish(channel, payload)
                    break
                except MovedError as exc:
                    self.slots.moved(key_slot(channel.encode()), (exc.host, int(exc.port)))
                    continue
                except (ClusterDownError, TryAgainError) as exc:
                    failure = exc
                except _redis_errors() + (OSError,) as exc:
                    # a timeout is no proof the node is gone (a busy host answers late): only a refused or
                    # broken connection marks it down; a killed node's subscribers mark it down at once
                    failure = exc
                    if not isinstance(exc, (TimeoutError, RedisTimeout)):
                        self.slots.failed(node)
            self.mark("publisher", False)
            if loop.time() > deadline:
                self.stats["publish_failed"] += 1
                log.warning("spublish of %s failed for %.1fs, giving up: %r", frame["id"], self.PUBLISH_TIMEOUT,
                            failure or f"owner {node} down")
                raise PublishFailed(str(failure or "owner down")) from None
            try:
                await self.slots.refresh()
            except ConnectionError:
                pass
            await asyncio.sleep(self.RETRY)
        self.stats["published"] += 1
        self.mark("publisher", True)
        return {}

    async def healthy(self) -> bool:
        """Some master answers a PING within 0.5 s (asked all at once)."""
        async def ping(address: Address) -> bool:
            try:
                return bool(await asyncio.wait_for(self.slots.client(address).ping(), 0.5))
            except Exception:  # noqa: BLE001
                return False

        masters = {o for o in self.slots.owner if o is not None}
        return any(await asyncio.gather(*(ping(a) for a in masters)))
