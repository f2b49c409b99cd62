"""The online feature store on Redis: :class:`recsys.store.FeatureStore` implemented.

* Reads are one pipelined round trip described by a :class:`~recsys.store.ReadPlan`: each
  customer's batch hash of the asked version, their live hash and, when asked, their newest
  ``contacts_read`` contacts (offers sent), for one customer or a whole list at once.
* A model version is bulk-loaded into its own namespace (``<p>:{c:<id>}:v:<version>``) in
  pipelined chunks; its loaded marker is written last, so ``has_version`` is true only for a
  complete load. ``activate`` switches ``meta:active`` with one atomic ``SET ... GET`` and keeps
  the version it replaced in ``meta:previous``; readers of the old version keep seeing it
  whole until they switch, and the new one whole afterwards.
* Catalogue overrides, customer export and erasure.

Every Redis call runs inside :func:`feature_store.connection.store_errors`, so callers see
``recsys.errors`` only. Keys come from :mod:`feature_store.keys`, encodings from
:mod:`feature_store.codec`, the customer read's commands and decoding from
:mod:`feature_store.reads`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import redis

from feature_store import batch_writer, codec, feature_pack, keys, packed, privacy
from feature_store.connection import RedisClient, connect, store_errors
from feature_store.reads import (  # the read, shared by every reader (re-exported here)
    READ_OPERATION,
    _text,
    check_customer_id,
    check_version,
    decode_read,
    queue_read,
    read_commands,
)
from feature_store.tombstones import ErasedSet, Tombstones, configured_key, resolve
from recsys.config import Settings
from recsys.errors import InvalidRequestError, NotFoundError
from recsys.schema import is_item_id
from recsys.store import BatchRecord, CustomerState, ReadPlan, ReadResult

__all__ = [
    "READ_OPERATION",
    "RedisFeatureStore",
    "check_customer_id",
    "check_version",
    "decode_read",
    "queue_read",
    "read_commands",
]


class RedisFeatureStore:
    """Per-customer features on Redis, under the key prefix ``prefix``.

    ``client`` must return bytes (``decode_responses=False``); build it with
    :func:`feature_store.connection.connect` to get bounded timeouts.
    """

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        *,
        chunk_size: int = 1000,
        contacts_read: int = 50,
        rewrite_aof_on_erase: bool = False,
        erasure_key: str | None = None,
    ) -> None:
        if chunk_size < 1:
            raise InvalidRequestError(f"chunk_size must be positive, got {chunk_size}")
        self.client = client
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.contacts_read = contacts_read
        #: Erasures rewrite the append-only file and wait for it (``erase_rewrites_aof``).
        self.rewrite_aof_on_erase = rewrite_aof_on_erase
        #: ``settings.privacy.erasure_key`` (None: the store's own, ``feature_store.tombstones``)
        self.erasure_key = erasure_key
        self._tombstones: Tombstones | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, url: str | None = None, timeout_ms: float | None = None
    ) -> RedisFeatureStore:
        """A store on ``url`` (default ``settings.redis_url``) with the serving timeout.

        Pass a longer ``timeout_ms`` for bulk loads and maintenance; with neither a URL nor
        ``settings.redis_url``, start an :class:`~feature_store.embedded.EmbeddedRedis` first
        and pass its ``url``.
        """
        url = url or settings.redis_url
        if not url:
            raise InvalidRequestError("no Redis URL: set RECSYS_REDIS_URL or start embedded Redis")
        timeout = timeout_ms if timeout_ms is not None else settings.serving.redis_timeout_ms
        return cls(
            connect(url, timeout_ms=timeout),
            settings.redis_prefix,
            rewrite_aof_on_erase=settings.erase_rewrites_aof,
            erasure_key=configured_key(settings),
        )

    def close(self) -> None:
        self.client.close()

    @property
    def tombstones(self) -> Tombstones:
        """The erased set's digests, resolved on first use (a Redis call); plain ids of an older
        version are migrated then (and the AOF rewritten after, when erasures rewrite it)."""
        if self._tombstones is None:
            rewrite = functools.partial(privacy.rewrite_aof, self.client)
            after = rewrite if self.rewrite_aof_on_erase else None
            self._tombstones = resolve(self.client, self.prefix, self.erasure_key, after)
        return self._tombstones

    # -- reads (the hot path) ----------------------------------------------------------------

    def read(self, plan: ReadPlan) -> ReadResult:
        """The plan's keys in one pipelined round trip."""
        if not plan.customer_ids and not plan.meta:
            return ReadResult([])
        commands = read_commands(self.prefix, plan, contacts_read=self.contacts_read)
        with store_errors(READ_OPERATION):
            replies = packed.execute(self.client, commands)  # hiredis-packed: see its docstring
        return decode_read(plan, replies)

    def read_customer(self, version: str, customer_id: str) -> CustomerState:
        """One customer's whole state (batch record, live record, contacts): for tools and
        tests; serving builds its own :class:`ReadPlan`."""
        return self.read(ReadPlan.of(version, [customer_id])).states[0]

    def live_customer_ids(self, count: int = 1000) -> Iterator[list[str]]:
        """Ids of customers with a live record, about ``count`` at a time (``SCAN``: a customer
        may come twice). For enumerating customers known only from events; not a hot path."""
        prefix = self.prefix
        found = self.client.scan_iter(match=keys.live_pattern(prefix), count=count)
        while True:
            with store_errors("scan of live records"):
                page = list(itertools.islice(found, count))
            ids = [keys.customer_of_live_key(prefix, _text(key) or "") for key in page]
            known = [customer_id for customer_id in ids if customer_id is not None]
            if known:
                yield known
            if len(page) < count:
                return

    def ping(self) -> bool:
        """True when Redis answers within the timeout (for readiness checks); never raises."""
        try:
            with store_errors("ping"):
                return bool(self.client.ping())
        except Exception:
            return False

    # -- model versions ----------------------------------------------------------------------

    def load_version(
        self, version: str, records: Iterable[tuple[str, BatchRecord]], compact: bool = False
    ) -> int:
        """Write every record under ``version`` in chunks, then its loaded marker
        (:func:`feature_store.batch_writer.write_version`: a load that fails half-way leaves no
        marker; the records of customers erased meanwhile are dropped after each chunk);
        features as JSON, ``compact``: vectors as float16
        (:func:`feature_store.codec.encode_batch`). A bundle loads faster, features packed:
        :func:`feature_store.bulk_load.load_bundle`.
        """
        check_version(version)
        chunks = self._chunks(records, compact)
        return batch_writer.write_version(
            self.client, self.prefix, version, chunks, self.tombstones
        )

    def _chunks(
        self, records: Iterable[tuple[str, BatchRecord]], compact: bool
    ) -> Iterator[batch_writer.Chunk]:
        it = iter(records)
        while chunk := list(itertools.islice(it, self.chunk_size)):
            ids = [check_customer_id(customer_id) for customer_id, _ in chunk]
            encoded = [codec.encode_batch(record, compact) for _, record in chunk]
            names = tuple(name.encode() for name in encoded[0])  # the same for every record
            yield ids, names, [tuple(fields.values()) for fields in encoded]

    @contextlib.contextmanager
    def load_lock(self, version: str, ttl_s: float = 900.0) -> Iterator[bool]:
        """Try once to become the one process loading ``version``; yields whether it did.

        The lock expires after ``ttl_s`` so a crashed loader does not block the version.
        """
        name = keys.load_lock(self.prefix, check_version(version))
        lock = self.client.lock(name, timeout=ttl_s, blocking=False)
        with store_errors("load lock"):
            acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(redis.exceptions.RedisError):
                    lock.release()  # lost or expired: it times out on its own

    def has_version(self, version: str) -> bool:
        with store_errors("has_version"):
            return bool(self.client.exists(keys.loaded_marker(self.prefix, check_version(version))))

    def version_info(self, version: str) -> dict[str, Any] | None:
        """What the loaded marker says (``records``, ``loaded_at``), or None if not loaded."""
        with store_errors("version_info"):
            raw = self.client.get(keys.loaded_marker(self.prefix, check_version(version)))
        return orjson.loads(raw) if raw else None

    def activate(self, version: str) -> None:
        """Make ``version`` the active one (one atomic ``SET``); it must be fully loaded."""
        if not self.has_version(version):
            raise NotFoundError("loaded model version", version)
        with store_errors(f"activate {version!r}"):
            reply = self.client.set(keys.active_version(self.prefix), version, get=True)
            old = _text(reply) if isinstance(reply, bytes | str) else None
            if old and old != version:
                self.client.set(keys.previous_version(self.prefix), old)

    def active_version(self) -> str | None:
        with store_errors("active_version"):
            return _text(self.client.get(keys.active_version(self.prefix)))

    def previous_version(self) -> str | None:
        with store_errors("previous_version"):
            return _text(self.client.get(keys.previous_version(self.prefix)))

    def delete_version(self, version: str) -> int:
        """Drop an inactive version's namespace (marker first, then SCAN + UNLINK in chunks)."""
        check_version(version)
        if version == self.active_version():
            raise InvalidRequestError(f"version {version!r} is active; activate another first")
        with store_errors(f"delete of version {version!r}"):
            self.client.delete(keys.loaded_marker(self.prefix, version))
            self.client.delete(keys.feature_schema(self.prefix, version))
            removed = self._unlink_matching(keys.version_pattern(self.prefix, version))
            self.client.srem(keys.model_versions(self.prefix), version)  # last: see privacy
            return removed

    def _scan(self, pattern: str) -> Iterator[bytes]:
        return self.client.scan_iter(match=pattern, count=self.chunk_size)

    def _unlink_matching(self, pattern: str) -> int:
        removed, batch = 0, []
        for key in self._scan(pattern):
            batch.append(key)
            if len(batch) >= self.chunk_size:
                removed += int(self.client.unlink(*batch))
                batch = []
        if batch:
            removed += int(self.client.unlink(*batch))
        return removed

    # -- catalogue overrides -----------------------------------------------------------------

    def set_item_override(self, item_id: str, fields: dict[str, Any]) -> int:
        """Replace ``item_id``'s override and bump the catalogue revision in one MULTI.

        ``fields`` is the item's whole override (merge with :meth:`item_overrides` first to
        change one field). Returns the new revision.
        """
        if not is_item_id(item_id):
            raise InvalidRequestError(f"invalid item id {item_id!r}")
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.item_overrides(self.prefix), item_id, codec.dumps(fields))
        pipe.incr(keys.item_revision(self.prefix))
        with store_errors("set_item_override"):
            return int(pipe.execute()[1])

    def item_revision(self) -> int:
        """The catalogue revision: poll it, and re-read the overrides when it changes."""
        with store_errors("item_revision"):
            return int(self.client.get(keys.item_revision(self.prefix)) or 0)

    def item_overrides(self) -> dict[str, dict[str, Any]]:
        with store_errors("item_overrides"):
            raw = self.client.hgetall(keys.item_overrides(self.prefix))
        return {str(_text(k)): orjson.loads(v) for k, v in raw.items()}

    # -- customer privacy (feature_store.privacy: every key by name, no SCAN) ----------------

    def export_customer(self, customer_id: str, *, events: bool = True) -> dict[str, Any]:
        """Everything held about the customer, decoded and JSON-able.

        ``batch`` maps each version still holding a batch record to it, ``live`` is the live
        record (or None), ``contacts`` offer -> Unix time, ``event_ids`` the applied event ids,
        ``erased`` whether they are in the erased set, ``events`` their entries of the durable
        event stream (reads the whole stream: see :mod:`feature_store.privacy`; ``events=False``
        leaves them out, two round trips then).
        """
        check_customer_id(customer_id)
        self._use_schemas()
        return privacy.export_customer(
            self.client, self.prefix, customer_id, events=events, tombstones=self.tombstones
        )

    def _use_schemas(self) -> None:
        """Register the feature schema of every version with records (export decodes them all)."""
        with store_errors("read of feature schemas"):
            versions = self.client.smembers(keys.model_versions(self.prefix))
            pipe = self.client.pipeline(transaction=False)
            for version in versions:
                pipe.get(keys.feature_schema(self.prefix, str(_text(version))))
            for raw in pipe.execute() if versions else ():
                feature_pack.use(raw)

    def erase_customer(self, customer_id: str, *, known: bool = True) -> int:
        """Add the customer's digest to the erased set, delete every key of theirs (by name) and
        their entries of the event stream; how many keys and stream entries were removed.
        ``known=False`` (no model knows them): not kept erased when nothing was held.

        Reads the whole event stream (see :mod:`feature_store.privacy` for the cost); with
        ``rewrite_aof_on_erase``, returns only once the append-only file is rewritten.
        """
        check_customer_id(customer_id)
        erasure = privacy.erase_customer(
            self.client,
            self.prefix,
            customer_id,
            known=known,
            rewrite=self.rewrite_aof_on_erase,
            tombstones=self.tombstones,
        )
        return erasure.keys_removed + erasure.events_removed

    def is_erased(self, customer_id: str) -> bool:
        return privacy.is_erased(self.client, self.prefix, customer_id, self.tombstones)

    def erased_customers(self) -> ErasedSet:
        """The erased customers, ``id in erased`` (training and the events export leave them
        out)."""
        return privacy.erased_customers(self.client, self.prefix, self.tombstones)
