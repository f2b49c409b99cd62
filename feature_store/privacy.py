"""A customer's data in the online store: export it, erase it, keep it erased.

Every key of one customer is known by name (:func:`feature_store.keys.customer_keys`): the
batch record of each model version still holding records (the set ``<p>:meta:versions``, which
``load_version`` fills before writing and ``delete_version`` empties after dropping, plus
``meta:active`` and ``meta:previous`` for versions loaded before that set existed), the live
record, the contacts and the applied event ids. Export and erase therefore read or ``UNLINK``
those keys by name, in two round trips, whatever the size of the keyspace; no ``SCAN``.

Erasure (:func:`erase_customer`), in this order:

1. ``SADD <p>:erased <digest>`` (on Redis Cluster, the erased set of the customer's slot:
   ``feature_store.shards``; the digest is the keyed one of ``feature_store.tombstones``, never
   the id itself): from now on the event writer's script refuses to write the
   customer (their events are acknowledged as ``ignored``, nothing is stored), a bulk load drops
   their batch record before it marks the version loaded, ``recsys export-events`` leaves them
   out and training excludes them. The digest stays in that set for good: it is the
   suppression list that keeps them out, and the one thing held about them (export says
   ``erased``); it answers "is this id erased?" to whoever holds the key, and nothing else.
   Except for an id nothing knew (no served model was trained on it -- the caller says so with
   ``known=False`` -- no key, no stream entry: steps 2 and 3 removed nothing, and it was not
   erased before): its digest is taken out of the set again at the end, so
   erasing made-up ids cannot grow the set for ever (an event of that id arriving while the
   erasure runs is acknowledged as ``ignored``).
2. ``UNLINK`` of every key of the customer, by name, in one command (one hash slot).
3. Their entries in the durable event stream ``<p>:events`` (on a cluster, the shard of their
   slot, and the unsharded stream an earlier layout may have filled) are deleted: a Lua script reads
   ``stream_chunk`` entries (``XRANGE``), deletes (``XDEL``) those whose ``customer_id`` is
   theirs and returns where it stopped, so only ids cross the network.

   **Cost**: the whole stream is read once, server side: O(stream length), at most
   ``event_stream_maxlen`` entries (1,000,000 by default). Measured: about 3.5 ms of Redis
   time per chunk of 1,000 nine-field entries, one round trip each, so about 3.5 s for a full
   stream of a million. Redis serves other clients between chunks, so none waits more than
   one chunk (well under the 50 ms serving timeout). An admin operation, per request: to erase
   many customers, add them all to the erased set and purge the stream once with
   :func:`purge_stream_events`, which takes a set of ids.

4. When asked (``rewrite_aof``: the setting ``erase_rewrites_aof``, on for the embedded
   server), the append-only file is rewritten (:func:`rewrite_aof`: ``BGREWRITEAOF``, then
   waiting until Redis reports the rewrite done and its status ``ok``). Until then the AOF on
   disk still holds every command ever written about the customer (their keys, their stream
   entries); the rewritten file holds only what the keyspace holds now, and Redis has replaced
   the old files with it (6.x renames over ``appendonly.aof``; 7.x unlinks the history files of
   ``appendonlydir/``) before it reports the rewrite done. After it, no file of the server holds
   the id's bytes: the erased set holds its digest. A rewrite already running when we
   ask may have forked before the erasure, so it is waited for and another one is started.
   **Cost**: a fork and a write of the whole dataset, per erasure (under a second for the demo's
   data; erasures are rare admin operations). Only RDB-free setups are covered: the embedded
   server writes no RDB snapshots (``--save ""``).

Everything is idempotent: an erasure that failed half-way (the store went away) is finished by
running it again. An erasure is verifiable: :func:`export_customer` afterwards answers
``erased: true`` and nothing held (with ``events=True``, no event in the stream either).
Nothing here logs a customer id.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.cluster

from feature_store import codec, keys, shards
from feature_store.connection import RedisClient, store_errors
from feature_store.tombstones import ErasedSet, Tombstones, queue_check, resolve, take_check
from recsys.errors import StoreUnavailableError

#: Stream entries read per script call by the stream purge and the events export.
STREAM_CHUNK = 1_000
#: How long an erasure waits for the append-only file's rewrite.
REWRITE_TIMEOUT_S = 60.0

# KEYS[1] the stream; an entry's customer is its ``customer_id`` field (events format).
# ARGV: start id (inclusive; "-" for the first call), count, mode ("del" or "get"), then the
# customer ids. Returns {entries read, last id read or "", n, ...}: n is how many entries were
# deleted ("del"), or for "get" how many matched, followed by those entries (id and fields).
_STREAM_SCAN = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = true end
local hits = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'customer_id' then
      if wanted[fields[i + 1]] then hits[#hits + 1] = entry end
      break
    end
  end
end
local last = ''
if #entries > 0 then last = entries[#entries][1] end
if ARGV[3] == 'get' then
  return {#entries, last, #hits, hits}
end
local removed = 0
for i = 1, #hits, 500 do
  local ids = {}
  for j = i, math.min(i + 499, #hits) do ids[#ids + 1] = hits[j][1] end
  removed = removed + redis.call('XDEL', KEYS[1], unpack(ids))
end
return {#entries, last, removed}
"""


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed: keys of the customer, and entries of the event stream."""

    keys_removed: int
    events_removed: int


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _versions(replies: list[Any]) -> list[str]:
    """The versions in ``[SMEMBERS meta:versions, GET meta:active, GET meta:previous]``."""
    members, active, previous = replies
    found = {str(_text(m)) for m in members}
    found.update(str(_text(v)) for v in (active, previous) if v)
    return sorted(found)


def _queue_versions(pipe: Any, prefix: str) -> None:
    pipe.smembers(keys.model_versions(prefix))
    pipe.get(keys.active_version(prefix))
    pipe.get(keys.previous_version(prefix))


def export_customer(
    client: RedisClient,
    prefix: str,
    customer_id: str,
    *,
    events: bool = True,
    stream_chunk: int = STREAM_CHUNK,
    tombstones: Tombstones | None = None,
) -> dict[str, Any]:
    """Everything held about the customer (validated id), decoded and JSON-able.

    ``batch`` maps each version holding a batch record to it, ``live`` is the live record (or
    None), ``contacts`` offer -> Unix time, ``event_ids`` the applied event ids, ``other`` is
    kept for the shape (always empty: every key is read by name), ``erased`` whether they are in
    the erased set. Two round trips, and ``events``: their entries of the event stream
    (events-format text columns, oldest first), which reads the whole stream (see the module
    docstring for the cost); ``events=False`` leaves that out. ``tombstones``: the store's
    (default: resolved from the store, :func:`feature_store.tombstones.resolve`).
    """
    tombstones = tombstones or resolve(client, prefix, None)
    with store_errors("export of a customer"):
        pipe = client.pipeline(transaction=False)
        _queue_versions(pipe, prefix)
        pipe.sismember(_erased_key(client, prefix, customer_id), tombstones.of(customer_id))
        pipe.hgetall(keys.customer_live(prefix, customer_id))
        pipe.zrange(keys.customer_contacts(prefix, customer_id), 0, -1, withscores=True)
        pipe.zrange(keys.customer_event_ids(prefix, customer_id), 0, -1)
        pipe.smembers(keys.legacy_customer_event_ids(prefix, customer_id))
        replies = pipe.execute()
        versions = _versions(replies[:3])
        erased, live, contacts, event_ids, legacy_ids = replies[3:]
        event_ids = {*event_ids, *legacy_ids}
        pipe = client.pipeline(transaction=False)
        for version in versions:
            pipe.hgetall(keys.customer_batch(prefix, customer_id, version))
        batches = pipe.execute() if versions else []
    entries: list[tuple[str, str | None, Any]] = [
        (f"v:{version}", "hash", batch)
        for version, batch in zip(versions, batches, strict=True)
        if batch
    ]
    if live:
        entries.append(("live", "hash", live))
    if contacts:
        entries.append(("contacts", "zset", contacts))
    if event_ids:
        entries.append(("evt", "set", event_ids))
    held: dict[str, Any] = {
        "customer_id": customer_id,
        "erased": bool(erased),
        **codec.export_form(entries),
    }
    if events:
        held["events"] = list(stream_events(client, prefix, {customer_id}, stream_chunk))
    return held


def erase_customer(
    client: RedisClient,
    prefix: str,
    customer_id: str,
    *,
    known: bool = True,
    stream_chunk: int = STREAM_CHUNK,
    rewrite: bool = False,
    tombstones: Tombstones | None = None,
) -> Erasure:
    """Erase the customer (validated id): see the module docstring for what and in which order;
    ``rewrite`` rewrites the append-only file afterwards and waits for it (step 4).

    ``known=False``: the caller (serving) knows no model trained on them; then the id is not
    kept in the erased set when the store held nothing of them either. ``tombstones`` as for
    :func:`export_customer`."""
    tombstone = (tombstones or resolve(client, prefix, None)).of(customer_id)
    with store_errors("erase of a customer"):
        pipe = client.pipeline(transaction=False)
        shard = shards.shard_of(shards.is_cluster(client), customer_id)
        pipe.sadd(keys.erased_customers(prefix, shard), tombstone)  # first: writers refuse them
        _queue_versions(pipe, prefix)
        shards.register(pipe, prefix, [shard])
        replies = pipe.execute()
        added, versions = int(replies[0]), _versions(replies[1:4])
        removed = int(client.unlink(*keys.customer_keys(prefix, customer_id, versions)))
    events_removed = purge_stream_events(client, prefix, {customer_id}, stream_chunk)
    if added and not known and not removed and not events_removed:  # nothing held: unknown
        with store_errors("erase of a customer"):
            client.srem(keys.erased_customers(prefix, shard), tombstone)
    if rewrite:
        rewrite_aof(client)
    return Erasure(keys_removed=removed, events_removed=events_removed)


def _servers(client: RedisClient) -> list[redis.Redis]:
    if isinstance(client, redis.cluster.RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def _rewrite_busy(server: redis.Redis) -> bool:
    info = server.info("persistence")
    return bool(
        int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0))
    )


def _await_no_rewrite(server: redis.Redis, deadline: float) -> None:
    while _rewrite_busy(server):
        if time.monotonic() > deadline:
            raise StoreUnavailableError("the rewrite of Redis's append-only file did not finish")
        time.sleep(0.01)


def rewrite_aof(client: RedisClient, *, timeout_s: float = REWRITE_TIMEOUT_S) -> int:
    """Rewrite the append-only file of every server (each primary of a cluster) and wait until
    each reports it done with status ``ok``: the files on disk then hold the keyspace as it is
    now, nothing older. A server without AOF is skipped. How many were rewritten."""
    deadline = time.monotonic() + timeout_s
    rewritten = 0
    with store_errors("rewrite of the append-only file"):
        for server in _servers(client):
            if not int(server.info("persistence").get("aof_enabled", 0)):
                continue
            while True:
                _await_no_rewrite(server, deadline)  # one running may predate the erasure
                try:
                    server.bgrewriteaof()
                    break
                except redis.exceptions.ResponseError as exc:
                    if "in progress" not in str(exc):
                        raise
            _await_no_rewrite(server, deadline)
            status = server.info("persistence").get("aof_last_bgrewrite_status")
            if status != "ok":
                raise StoreUnavailableError(f"the append-only file rewrite failed ({status})")
            rewritten += 1
    return rewritten


def _erased_key(client: RedisClient, prefix: str, customer_id: str) -> str:
    return keys.erased_customers(prefix, shards.shard_of(shards.is_cluster(client), customer_id))


def _streams_of(client: RedisClient, customers: Collection[str]) -> dict[str | None, list[str]]:
    """The stream shards that may hold the customers' events -> those customers."""
    groups = shards.group_by_shard(shards.is_cluster(client), customers)
    every = sorted(customers)
    return {None: every, **{s: g for s, g in groups.items() if s is not None}}


def _stream_pass(
    client: RedisClient, prefix: str, customers: Collection[str], mode: str, chunk: int
) -> Iterator[list[Any]]:
    """Run the stream script over each stream shard that may hold the customers' events, chunk
    by chunk; yields each reply."""
    script = client.register_script(_STREAM_SCAN)
    for shard, group in _streams_of(client, customers).items():
        stream = keys.event_stream(prefix, shard)
        start = "-"
        while True:
            with store_errors("scan of the event stream"):
                reply = cast(list[Any], script(keys=[stream], args=[start, chunk, mode, *group]))
            yield reply
            read, last = int(reply[0]), _text(reply[1])
            if read < chunk or not last:
                break
            start = "(" + last


def purge_stream_events(
    client: RedisClient, prefix: str, customers: Collection[str], chunk: int = STREAM_CHUNK
) -> int:
    """Delete every entry of the event stream whose customer is in ``customers``; how many.

    One pass over the whole stream whatever the number of customers (O(stream length), see the
    module docstring). Entries appended while it runs are read too; it is safe to run again.
    """
    if not customers:
        return 0
    return sum(int(r[2]) for r in _stream_pass(client, prefix, customers, "del", chunk))


def stream_events(
    client: RedisClient, prefix: str, customers: Collection[str], chunk: int = STREAM_CHUNK
) -> Iterator[dict[str, str]]:
    """The customers' entries of the event stream, oldest first, as events-format columns."""
    if not customers:
        return
    for reply in _stream_pass(client, prefix, customers, "get", chunk):
        for _, fields in reply[3] if int(reply[2]) else ():
            flat = [_text(f) or "" for f in fields]
            yield dict(zip(flat[0::2], flat[1::2], strict=True))


def is_erased(client: RedisClient, prefix: str, customer_id: str, tombstones: Tombstones) -> bool:
    with store_errors("is_erased"):
        member = tombstones.of(customer_id)
        return bool(client.sismember(_erased_key(client, prefix, customer_id), member))


def erased_customers(client: RedisClient, prefix: str, tombstones: Tombstones) -> ErasedSet:
    """The erased customers, of every shard, as a container that answers ``id in erased``
    (training and the events export leave them out; nobody can list them)."""
    known = shards.known_shards(client, prefix)
    with store_errors("erased_customers"):
        pipe = client.pipeline(transaction=False)
        for shard in known:
            pipe.smembers(keys.erased_customers(prefix, shard))
        replies = pipe.execute()
    return ErasedSet(tombstones, (str(_text(m)) for members in replies for m in members))


def unlink_erased_batches(
    client: RedisClient, prefix: str, tombstones: Tombstones, version: str, customers: list[str]
) -> int:
    """``UNLINK`` the batch records of ``version`` of those of ``customers`` who are erased; how
    many. A bulk load calls it after writing each chunk's records: a customer erased while the
    load ran (after it read the erased set) would otherwise get a batch record back. The check
    follows the chunk's writes, so an erasure that it misses came after them and its own
    ``UNLINK`` (of every version in ``meta:versions``, which the load filled first) removes the
    record."""
    if not customers:
        return 0
    groups = shards.group_by_shard(shards.is_cluster(client), customers)
    with store_errors("drop of erased customers' batch records"):
        pipe = client.pipeline(transaction=False)
        queue_check(pipe, prefix, tombstones, groups)
        erased = take_check(groups, iter(pipe.execute()))
        if not erased:
            return 0
        return int(client.unlink(*(keys.customer_batch(prefix, c, version) for c in erased)))
