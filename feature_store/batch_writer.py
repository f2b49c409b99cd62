"""Writing one model version's batch records: namespace, schema, chunks, then the marker.

The version's records go to its own namespace (``<p>:{c:<id>}:v:<version>``) and its loaded
marker is written last, so ``has_version`` is true only for a complete load and a reload never
mixes versions (the switch is ``RedisFeatureStore.activate``'s one atomic ``SET``). A load that
fails half-way leaves no marker; a later load of the version overwrites every record whole
(every field is always written, empty where unused).

The writes, in chunks of ``HSET`` commands (one per customer, no transaction):

* one server: hiredis packs each chunk into one buffer; a sender thread writes it to a
  connection of the client's pool and reads its replies while the caller encodes the next
  chunk, so the encoding, the socket and Redis overlap (at most two chunks in flight);
* Redis Cluster: a non-transactional pipeline per chunk (redis-py sends each command to the
  node of its slot).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import hiredis
import orjson
import redis

from feature_store import keys, privacy
from feature_store.connection import RedisClient, store_errors
from feature_store.feature_pack import FeatureSchema

#: One chunk: customer ids and, for each, the ``HSET`` field/value arguments of their record.
Chunk: TypeAlias = tuple[Sequence[str], Sequence[Sequence[bytes | str]]]

_DONE = None


def write_version(
    client: RedisClient,
    prefix: str,
    version: str,
    chunks: Iterable[Chunk],
    schema: FeatureSchema | None = None,
) -> int:
    """Write every chunk's records under ``version`` (ids already checked), then its loaded
    marker; how many records. ``schema``: the packed features' schema, stored first."""
    marker = keys.loaded_marker(prefix, version)
    operation = f"load of version {version!r}"
    with store_errors(operation):
        client.delete(marker)
        client.sadd(keys.model_versions(prefix), version)  # erase finds its records by name
        if schema is not None:
            client.set(keys.feature_schema(prefix, version), schema.to_json())
        if isinstance(client, redis.Redis):
            written = _write_overlapped(client, prefix, version, chunks)
        else:
            written = _write_pipelined(client, prefix, version, chunks)
    privacy.drop_erased_batches(client, prefix, version)  # erased during the load
    with store_errors(operation):
        loaded_at = datetime.now(UTC).isoformat()
        client.set(marker, orjson.dumps({"records": written, "loaded_at": loaded_at}))
    return written


def _write_pipelined(client: Any, prefix: str, version: str, chunks: Iterable[Chunk]) -> int:
    written = 0
    for ids, fields in chunks:
        pipe = client.pipeline(transaction=False)
        for customer_id, args in zip(ids, fields, strict=True):
            pipe.execute_command("HSET", keys.customer_batch(prefix, customer_id, version), *args)
        pipe.execute()
        written += len(ids)
    return written


def _packed(prefix: str, version: str, chunk: Chunk) -> bytes:
    ids, fields = chunk
    pack: Any = hiredis.pack_command
    key = keys.customer_batch
    return b"".join(
        [
            pack(("HSET", key(prefix, cid, version), *args))
            for cid, args in zip(ids, fields, strict=True)
        ]
    )


class _Sender(threading.Thread):
    """Writes packed chunks to one connection and reads their replies, in order."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(name="bulk-load-sender", daemon=True)
        self.pool = client.connection_pool
        self.inbox: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=1)
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

    def _send(self, connection: Any, buffer: bytes, count: int) -> None:
        connection.send_packed_command([buffer], check_health=False)
        for _ in range(count):
            reply = connection.read_response()
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply

    def put(self, buffer: bytes, count: int) -> None:
        if self.failure is not None:
            raise self.failure
        self.inbox.put((buffer, count))


def _write_overlapped(
    client: redis.Redis, prefix: str, version: str, chunks: Iterable[Chunk]
) -> int:
    sender = _Sender(client)
    sender.start()
    written = 0
    try:
        for chunk in chunks:
            sender.put(_packed(prefix, version, chunk), len(chunk[0]))
            written += len(chunk[0])
    finally:
        sender.inbox.put(_DONE)
        sender.join()
    if sender.failure is not None:
        raise sender.failure
    return written
