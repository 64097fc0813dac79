"""Which bus and which call registry the bus setting names: in memory for one process,
Redis (Streams for events, hashes and pub/sub for the registry) for replicas.

Its own module so that each Redis form, built on its in-memory form, and the in-memory
form never import each other.
"""

from __future__ import annotations

from pipeline.delivery.bus import EventBus, MemoryBus
from pipeline.delivery.cluster import CallRegistry, Cluster, ClusterHost
from pipeline.delivery.redis_bus import RedisBus
from pipeline.delivery.redis_cluster import RedisCluster

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def make_bus(url: str, subscriber_queue: int) -> EventBus:
    if url.startswith(REDIS_SCHEMES):
        return RedisBus(url, subscriber_queue)
    if url != "memory":
        raise ValueError(f"CALLSTREAM_BUS={url!r}: use memory or redis://host:port/db")
    return MemoryBus(subscriber_queue)


def make_cluster(host: ClusterHost, bus_url: str) -> CallRegistry:
    if bus_url.startswith(REDIS_SCHEMES):
        return RedisCluster(host, bus_url)
    return Cluster(host)
