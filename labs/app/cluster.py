"""The Redis Cluster brokers: classic PUBLISH/SUBSCRIBE over a cluster, and sharded Pub/Sub.

Both take `--redis` as a comma-separated list of the masters' URLs (redis://redis-1:6379/0,...).

- `RedisClusterPubSub` is `RedisPubSub` on one node of the cluster, a different node per replica (app-N
  uses master (N-1) mod M): a classic PUBLISH on any node reaches the subscribers of every node, because
  every node forwards it to every other node over the cluster bus. PUBLISH's reply counts only the
  receiving node's own subscribers, so a 0 does not mean nobody heard it here.
- `RedisClusterSharded` publishes with SPUBLISH through redis-py's `RedisCluster` (which routes each
  channel to the master that owns its slot and follows MOVED and failover), and subscribes with SSUBSCRIBE
  on the master that owns each room's slot: one subscriber connection per master it needs, each with its
  own reader task and its own heartbeat.

Why not redis-py's own `redis.asyncio.cluster.ClusterPubSub` (redis 8.1, which has `ssubscribe` and
re-homes shard channels after a slots-cache refresh)? It reads the per-node connections in turn with
`get_sharded_message(timeout=...)`: a timeout of 0 spins a core, and a timeout t makes a message on one
node wait behind up to t on each of the others; its re-homing runs only when some command of the same
client hits MOVED or a connection error, and nothing notices a subscriber connection that went silent (a
killed node sends no FIN). Here each node's connection has a reader that blocks on its socket, a PING
every HEARTBEAT s that must be answered within DEAF_AFTER s, and a loss moves that node's channels to
their new owners at once, refreshing the slot map until the cluster names one that answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from .brokers import Deliver, NoBroker, PublishFailed, RedisPubSub, _redis_errors

log = logging.getLogger("wslab.cluster")


def node_urls(url: str) -> list[str]:
    """The comma-separated URLs of `--redis`, in order."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no Redis URL in {url!r}")
    return urls


def replica_number(name: str) -> int:
    """app-3 -> 3; 1 for a name without a number."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 1


class RedisClusterPubSub(RedisPubSub):
    """Classic PUBLISH/SUBSCRIBE on one master of the cluster (app-N on master (N-1) mod M)."""

    counts_every_subscriber = False
    #: hundreds of clients per replica publish at once in the many-rooms scenarios
    blocking_pool = 64

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        urls = node_urls(redis_url)
        super().__init__(urls[(replica_number(name) - 1) % len(urls)], name=name)


class Shard:
    """One subscriber connection to one master: SSUBSCRIBE there, read it, PING it."""

    def __init__(self, broker: "RedisClusterSharded", node: Any) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.broker, self.node = broker, node
        # No retries: redis-py would reconnect this connection by itself and subscribe again on the same
        # node (which, after a failover, no longer owns the slots), racing our reader for the socket. A
        # failure here must reach `lost`, which moves the channels to their new owner.
        self.client = redis.Redis(host=node.host, port=node.port, socket_timeout=1.0, socket_connect_timeout=1.0,
                                  client_name=broker.name or None, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        self.heard = asyncio.get_running_loop().time()
        self.reader: asyncio.Task[None] | None = None
        self.pinger: asyncio.Task[None] | None = None
        self.dead = False

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        await self.pubsub.ssubscribe(channel)
        if self.reader is None or self.reader.done():  # listen() ends when nothing is subscribed
            self.reader = asyncio.create_task(self._read())
            self.pinger = asyncio.create_task(self._ping())

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
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
            self.broker.orphaned([channel], f"{self.node.name} dropped {channel}")

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.broker.HEARTBEAT)
            if not self.channels:  # nothing subscribed: a PONG would come back as a reply nobody reads
                self.heard = loop.time()
                continue
            try:
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

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        super().__init__(redis_url, name=name)
        self.urls = node_urls(redis_url)
        self.members: Counter[str] = Counter()
        self.confirmed: dict[str, asyncio.Event] = {}
        #: master name ("host:port") -> its subscriber connection
        self.shards: dict[str, Shard] = {}
        self.orphans: set[str] = set()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.cluster = await self._await_cluster()
        self.tasks.append(asyncio.create_task(self._rehome()))

    def _new_cluster(self) -> Any:
        from urllib.parse import urlsplit

        from redis.asyncio.cluster import ClusterNode, RedisCluster
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialWithJitterBackoff

        nodes = [ClusterNode(urlsplit(u).hostname or "localhost", urlsplit(u).port or 6379) for u in self.urls]
        # Retries with a short backoff (redis-py's default starts at 1 s): a publish to a master that died
        # keeps trying, through MOVED and the slot-map refresh, for about as long as a failover takes.
        # max_connections is per node (redis-py's default, 100, fails a burst of publishes from hundreds of
        # clients with "Too many connections")
        return RedisCluster(startup_nodes=nodes, socket_timeout=1.0, socket_connect_timeout=1.0,
                            client_name=self.name or None, max_connections=1000,
                            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 10))

    async def _await_cluster(self, timeout: float = 30.0) -> Any:
        """The lab forms the cluster after its nodes start: retry until one covers every slot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            cluster = self._new_cluster()
            try:
                await cluster.initialize()
                await cluster.ping()
                return cluster
            except Exception:  # noqa: BLE001 - not formed yet (slots not covered, CLUSTERDOWN, no node yet)
                await cluster.aclose()
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self.shards.values())), return_exceptions=True)
        await self.cluster.aclose()

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
        try:
            node = self.cluster.get_node_from_key(channel)
            shard = self.shards.get(node.name)
            if shard is None or shard.dead:
                shard = self.shards[node.name] = Shard(self, node)
            await shard.subscribe(channel)
        except Exception as exc:  # noqa: BLE001 - the re-homing task refreshes the map and tries again
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
        if self.shards.get(shard.node.name) is shard:
            del self.shards[shard.node.name]
        self.stats["shards_lost"] += 1
        log.warning("lost %s (%s): re-homing %d channel(s)", shard.node.name, why, len(shard.channels))
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
                    await self.cluster.nodes_manager.initialize()
                except Exception as exc:  # noqa: BLE001 - no node answered this time
                    log.warning("slot map refresh failed: %r", exc)
                tried = sorted(self.orphans)
                self.orphans.clear()
                for channel in tried:
                    await self._home(channel)
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
        payload = json.dumps(frame)
        try:
            await self.cluster.spublish(self.channel(room), payload)
        except Exception as exc:  # noqa: BLE001 - redis-py has retried already (MOVED, failover, timeouts)
            self.mark("publisher", False)
            self.stats["publish_failed"] += 1
            log.warning("spublish of %s failed, giving up: %r", frame["id"], exc)
            raise PublishFailed(str(exc)) from None
        self.stats["published"] += 1
        self.mark("publisher", True)
        return {}

    async def healthy(self) -> bool:
        """Some master answers (redis-py's PING goes to every node: one down would fail it)."""
        for node in self.cluster.get_primaries():
            try:
                await asyncio.wait_for(self.cluster.execute_command("PING", target_nodes=node), 1.0)
                return True
            except Exception:  # noqa: BLE001 - try the next master
                continue
        return False
