"""Where a customer's events and erasure live: one shard on one server, one per slot on a cluster.

One Lua script applies a customer's events (``feature_store.ingest``): it checks the erased set,
writes the customer's keys and appends to the event stream, so those keys must share a hash slot.
On one Redis server every key does; on Redis Cluster the stream and the erased set are sharded by
the customers' slot (``feature_store.keys``, "Shards"): a customer's events go to
``<p>:{<slot tag>}:events`` and their erasure to ``<p>:{<slot tag>}:erased``, on their own slot.
A batch of many customers is then written by one script per slot it touches.

The slots whose shards were ever written are kept in ``<p>:meta:shards`` so that the export, the
stream purge and the erased-set union read exactly those (plus the unsharded keys, which a
writer of an earlier layout may have filled), in slot order, never with ``SCAN``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import redis.asyncio.cluster
import redis.cluster

from feature_store import keys
from feature_store.connection import RedisClient, store_errors

Shard = str | None  # a slot tag, or None: the unsharded keys


def is_cluster(client: Any) -> bool:
    """Whether ``client`` (sync or asyncio) talks to a Redis Cluster."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def shard_of(cluster: bool, customer_id: str) -> Shard:
    """The shard of the customer's events and erasure."""
    return keys.slot_tag(keys.customer_slot(customer_id)) if cluster else None


def group_by_shard(cluster: bool, customers: Iterable[str]) -> dict[Shard, list[str]]:
    """The customers by shard, in their order (one group, ``None``, on one server)."""
    if not cluster:
        return {None: list(customers)}
    groups: dict[Shard, list[str]] = {}
    for customer in customers:
        groups.setdefault(shard_of(True, customer), []).append(customer)
    return groups


def shard_maxlen(cluster: bool, maxlen: int) -> int:
    """The cap of one stream shard: the whole cap on one server, its share of it on a cluster
    (the slots share ``maxlen``; each keeps at least one entry); 0: no cap."""
    if maxlen <= 0 or not cluster:
        return max(maxlen, 0)
    return max(1, math.ceil(maxlen / keys.SLOTS))


def known_shards(client: RedisClient, prefix: str) -> list[Shard]:
    """Every shard that may hold events or erasures: the unsharded keys, then on a cluster the
    registered slots' shards in slot order."""
    if not is_cluster(client):
        return [None]
    with store_errors("read of the shard registry"):
        members = client.smembers(keys.stream_shards(prefix))
    slots = sorted(int(m) for m in members)  # type: ignore[union-attr]
    return [None, *(keys.slot_tag(s) for s in slots)]


def slots_of(shards: Iterable[Shard]) -> list[str]:
    """The slots (decimal text) of the sharded ones of ``shards``: registry members."""
    return [str(keys.tag_slot(s)) for s in shards if s is not None]


def register(pipe: Any, prefix: str, shards: Iterable[Shard]) -> None:
    """Queue the registration of ``shards`` (their slots) in ``<p>:meta:shards``."""
    slots = slots_of(shards)
    if slots:
        pipe.sadd(keys.stream_shards(prefix), *slots)
