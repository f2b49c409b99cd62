"""Writing one model version's batch records: namespace, schema, chunks, then the marker.

The version's records go to its own namespace (``<p>:{c:<id>}:v:<version>``) and its loaded
marker is written last, so ``has_version`` is true only for a complete load and a reload never
mixes versions (the switch is ``RedisFeatureStore.activate``'s one atomic ``SET``). A load that
fails half-way leaves no marker; a later load of the version overwrites every record whole
(every field is always written, empty where unused).

The writes, in chunks of ``HSET`` commands (one per customer, no transaction):

* one server: each chunk becomes one buffer of Redis protocol (one ``%`` format per customer
  of a template made once per chunk: about 2 us a customer, hiredis' ``pack_command`` 3 us);
  a sender thread writes it to a connection of the client's pool and reads its replies while
  the caller encodes the next chunk, so the encoding, the socket and Redis overlap (at most
  two chunks in flight);
* Redis Cluster: a non-transactional pipeline per chunk (redis-py sends each command to the
  node of its slot).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import orjson
import redis

from feature_store import keys, privacy
from feature_store.connection import RedisClient, store_errors
from feature_store.feature_pack import FeatureSchema
from feature_store.tombstones import Tombstones

#: One chunk: customer ids, the hash fields every record of the chunk has, and each record's
#: values of those fields, in that order.
Chunk: TypeAlias = tuple[Sequence[str], Sequence[bytes], Sequence[Sequence[bytes]]]

_DONE = None
log = logging.getLogger(__name__)
#: ``hash-max-listpack-value`` of Redis 7, by its Redis 6 name (7 reads both).
LISTPACK_VALUE = "hash-max-ziplist-value"


def listpack_limit(client: RedisClient) -> int | None:
    """The server's largest hash value kept in a compact listpack (None: CONFIG refused)."""
    try:
        reply: Any = client.config_get(LISTPACK_VALUE)
    except redis.exceptions.RedisError:  # CONFIG may be renamed or refused (managed Redis)
        return None
    value = next(iter(reply.values()), None) if isinstance(reply, dict) else None
    return int(value) if value is not None else None


def warn_unless_listpack(client: RedisClient, largest: int) -> bool:
    """Whether values of up to ``largest`` bytes keep a record a listpack; logs a warning when
    not: each record is then a hash table, about 2-3 times the memory."""
    limit = listpack_limit(client)
    if limit is None or largest <= limit:
        return True
    log.warning(
        "batch records hold values of up to %d bytes but the server's %s is %d: each record "
        "becomes a hash table (2-3x the memory); set it to at least %d",
        largest,
        LISTPACK_VALUE,
        limit,
        largest,
    )
    return False


def write_version(
    client: RedisClient,
    prefix: str,
    version: str,
    chunks: Iterable[Chunk],
    tombstones: Tombstones,
    schema: FeatureSchema | None = None,
) -> int:
    """Write every chunk's records under ``version`` (ids already checked), then its loaded
    marker; how many records. ``schema``: the packed features' schema, stored first. After each
    chunk is written, the records of its customers erased meanwhile are dropped
    (``privacy.unlink_erased_batches``; ``tombstones`` digest their ids)."""
    marker = keys.loaded_marker(prefix, version)
    operation = f"load of version {version!r}"
    with store_errors(operation):
        client.delete(marker)
        client.sadd(keys.model_versions(prefix), version)  # erase finds its records by name
        if schema is not None:
            client.set(keys.feature_schema(prefix, version), schema.to_json())

        def written_chunk(ids: Sequence[str]) -> None:
            privacy.unlink_erased_batches(client, prefix, tombstones, version, list(ids))

        if isinstance(client, redis.Redis):
            written = _write_overlapped(client, prefix, version, chunks, written_chunk)
        else:
            written = _write_pipelined(client, prefix, version, chunks, written_chunk)
    with store_errors(operation):
        loaded_at = datetime.now(UTC).isoformat()
        client.set(marker, orjson.dumps({"records": written, "loaded_at": loaded_at}))
    return written


#: Called with a chunk's customer ids once its records are written.
Written: TypeAlias = Callable[[Sequence[str]], None]


def _write_pipelined(
    client: Any, prefix: str, version: str, chunks: Iterable[Chunk], written_chunk: Written
) -> int:
    written = 0
    for ids, names, rows in chunks:
        pipe = client.pipeline(transaction=False)
        for customer_id, row in zip(ids, rows, strict=True):
            fields = [part for pair in zip(names, row, strict=True) for part in pair]
            pipe.execute_command("HSET", keys.customer_batch(prefix, customer_id, version), *fields)
        pipe.execute()
        written_chunk(ids)
        written += len(ids)
    return written


def _template(names: Sequence[bytes]) -> bytes:
    """``HSET <key> <name> <value>...`` in Redis protocol, as a ``%`` template of the key's and
    each value's length and bytes."""
    head = b"*%d\r\n$4\r\nHSET\r\n$%%d\r\n%%b\r\n" % (2 + 2 * len(names))
    return head + b"".join(b"$%d\r\n%b\r\n$%%d\r\n%%b\r\n" % (len(n), n) for n in names)


def _packed(prefix: str, version: str, chunk: Chunk) -> bytes:
    """A chunk's ``HSET`` commands as one buffer of Redis protocol."""
    ids, names, rows = chunk
    template, key = _template(names), keys.customer_batch
    arguments: list[Any] = [None] * (2 + 2 * len(names))
    out = []
    for customer_id, row in zip(ids, rows, strict=True):
        name = key(prefix, customer_id, version).encode()
        arguments[0], arguments[1] = len(name), name
        arguments[2::2] = map(len, row)
        arguments[3::2] = row
        out.append(template % tuple(arguments))
    return b"".join(out)


class _Sender(threading.Thread):
    """Writes packed chunks to one connection and reads their replies, in order."""

    def __init__(self, client: redis.Redis, written_chunk: Written) -> None:
        super().__init__(name="bulk-load-sender", daemon=True)
        self.pool = client.connection_pool
        self.written_chunk = written_chunk
        self.inbox: queue.Queue[tuple[bytes, Sequence[str]] | None] = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None

    def run(self) -> None:
        connection = self.pool.get_connection()
        try:
            while (item := self.inbox.get()) is not _DONE:
                if self.failure is None:
                    self._send(connection, *item)
        except BaseException as exc:  # handed to the caller's thread
            self.failure = exc
            connection.disconnect()
            while self.inbox.get() is not _DONE:
                pass
        finally:
            self.pool.release(connection)

    def _send(self, connection: Any, buffer: bytes, ids: Sequence[str]) -> None:
        connection.send_packed_command([buffer], check_health=False)
        for _ in ids:
            reply = connection.read_response()
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply
        self.written_chunk(ids)

    def put(self, buffer: bytes, ids: Sequence[str]) -> None:
        if self.failure is not None:
            raise self.failure
        self.inbox.put((buffer, ids))


def _write_overlapped(
    client: redis.Redis, prefix: str, version: str, chunks: Iterable[Chunk], written_chunk: Written
) -> int:
    sender = _Sender(client, written_chunk)
    sender.start()
    written = 0
    try:
        for chunk in chunks:
            sender.put(_packed(prefix, version, chunk), chunk[0])
            written += len(chunk[0])
    finally:
        sender.inbox.put(_DONE)
        sender.join()
    if sender.failure is not None:
        raise sender.failure
    return written
