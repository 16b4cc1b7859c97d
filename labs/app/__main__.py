"""python -m wslab_app --name app-1 --broker redis-pubsub --redis redis://redis:6379/0

`--redis` is the broker's address whatever the broker: nats://nats:4222 for the NATS ones."""

import argparse
from collections.abc import Callable

from . import codec, run
from .brokers import NoBroker, RedisPubSub, SeedSubscribeGlob
from .cluster import RedisClusterPubSub
from .jetstream import NatsJetStream
from .nats_core import NatsCore
from .server import serve
from .sharded import RedisClusterSharded
from .streams import RedisStreams

BROKERS: dict[str, Callable[..., NoBroker]] = {
    "none": NoBroker,
    "redis-pubsub": RedisPubSub,
    "seed-subscribe-glob": SeedSubscribeGlob,
    "redis-streams": RedisStreams,
    "nats": NatsCore,
    "nats-jetstream": NatsJetStream,
    "redis-cluster-pubsub": RedisClusterPubSub,
    "redis-cluster-sharded": RedisClusterSharded,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="wslab_app", description="one WebSocket chat replica")
    parser.add_argument("--name", required=True, help="this replica's name, reported to clients")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--broker", choices=sorted(BROKERS), default="none")
    parser.add_argument("--redis", default="redis://redis:6379/0", help="the broker's URL (Redis, or nats://...)")
    parser.add_argument("--maxlen", type=int, default=100_000, help="approximate MAXLEN of each room's stream")
    parser.add_argument("--reader", choices=("redis-py", "raw"), default="raw",
                        help="the Redis Pub/Sub brokers' subscriber: a bare asyncio Protocol on hiredis (raw), or "
                             "redis-py's PubSub; other brokers ignore it")
    parser.add_argument("--json", choices=("stdlib", "orjson"), default="orjson", help="the JSON library")
    args = parser.parse_args()
    broker = BROKERS[args.broker](args.redis, maxlen=args.maxlen, name=args.name)
    if isinstance(broker, RedisPubSub):
        broker.reader = args.reader
    try:
        codec.use(args.json)
    except ImportError:
        parser.error("--json orjson needs the orjson package (pinned in images/app/requirements.txt); or give --json stdlib")
    run(serve(name=args.name, port=args.port, broker=broker))


if __name__ == "__main__":
    main()
