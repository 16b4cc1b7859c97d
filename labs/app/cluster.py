"""Classic PUBLISH/SUBSCRIBE over a Redis Cluster, and what both cluster brokers share.

Both cluster brokers (this one and `sharded.RedisClusterSharded`) take `--redis` as a comma-separated list
of the masters' URLs (redis://redis-1:6379/0,...).

`RedisClusterPubSub` is `RedisPubSub` on one node of the cluster, a different node per replica (app-N uses
master (N-1) mod M): a classic PUBLISH on any node reaches the subscribers of every node, because every
node forwards it to every other node over the cluster bus. PUBLISH's reply counts only the receiving
node's own subscribers, so a 0 does not mean nobody heard it here.
"""

from __future__ import annotations

from .brokers import RedisPubSub


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
    #: a cluster's nodes share the host's cores with the replicas: under load a beat or a connect queues
    #: longer than behind one Redis, and a false "deaf" rebuild loses messages
    timeout = 2.0
    DEAF_AFTER = 3.0

    def __init__(self, redis_url: str, *, maxlen: int = 0, name: str = "") -> None:
        urls = node_urls(redis_url)
        super().__init__(urls[(replica_number(name) - 1) % len(urls)], name=name)
