"""Events into Redis: idempotent, durable, applied to live records, writers serialized per customer.

:class:`EventWriter` (sync) and :class:`AsyncEventWriter` (``redis.asyncio``, the route's) take one
request's validated events and run the same rounds (:class:`_Request` holds them; only the I/O
differs):

1. Once per request: repeats of an ``event_id`` inside it are dropped (the first counts) and the
   events are grouped by customer (one pass; nothing below loops over the events per customer).
2. **Read**, one pipelined round trip for the customers still pending: which are erased (the
   digests of ``feature_store.tombstones`` in the erased set of their shard,
   ``feature_store.shards``), each one's live record (with its revision
   ``rev`` and online state ``agg``), batch record of the serving model version, and which of
   their event ids their ``ids`` sorted set already holds.
3. **Plan** (pure: ``recsys.customers.live_update.plan_updates`` bound to the model) each
   customer's new live record from what was read and the events not seen before.
4. **Write**: one Lua script (``feature_store.ingest_script``) per shard -- on one server, one
   script for the whole request; on Redis Cluster one per hash slot the batch touches, since a
   script's keys must share a slot. Only the live-record fields whose bytes changed are sent.

**Concurrent writers of one customer.** The new live record is computed in Python (online features,
fold-in, the ONNX churn model: none of it can run in Lua) from the record as read, so it is only
right if no other write to that customer landed in between. Redis runs scripts one at a time, so
the script is the serialization point: for each customer it checks, atomically with the write,
that the revision is still the one read and that none of the event ids was applied meanwhile.
A customer that passes is written (ids, changed fields, revision + 1, contacts) and their events
are appended to the stream, all in that one script; a customer that does not is left untouched
and the script says so (``c``) -- and, unlike an all-or-nothing check, the request's other
customers are written regardless. Only the conflicting customers are read, re-planned and
written again, in the next round, after a short random pause. There is no attempt limit and no
503 for contention: a conflict means another writer's write to that customer succeeded, so every
round some writer makes progress, and a request waits only while others keep writing the very
same customers; re-reading also turns an event applied meanwhile by a concurrent repeat of the
request into a duplicate. So concurrent writers all succeed, no update is lost and no event is
applied twice. On one server with no contention, a request is exactly one read and one script.

An erased customer (in the erased set at the read or at the write) is acknowledged as
``ignored``: nothing of theirs is written.

Idempotency window: a customer's ``ids`` sorted set keeps the ids applied in the last
``serving.event_id_ttl_days`` (30) and at most ``serving.max_event_ids`` (10,000) of them, so the
per-customer state is bounded; a repeat older than that is applied again (``ingest_script``).

The 202 is answered only after every script returned, so an accepted event is in the stream (and
in Redis's append-only file, within its fsync policy) before the client hears of it.

Live-record fields written (the layout of ``feature_store.codec``, plus this module's own):
``views``, ``cart``, ``purchased``, ``disliked``, ``features``, ``u`` (folded-in vector, empty:
none), ``uv`` (the model version ``u`` was folded against), ``agg`` (the online state of
``recsys.customers.online_features``, JSON) and ``rev`` (revision, an integer).

Stream entries carry the events-format columns as fields (``recsys.events.Event.to_row``), so
:func:`feature_store.event_stream.export_stream` writes a file ``recsys train`` reads as it is.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from feature_store import codec, keys, shards
from feature_store.connection import store_errors
from feature_store.event_stream import export_stream, stream_rows
from feature_store.ingest_script import (
    APPLIED,
    ERASED,
    WRITE,
    CustomerWrite,
    ScriptCall,
    script_call,
    statuses,
)
from feature_store.tombstones import Resolver, Tombstones, queue_check, take_check
from recsys.customers.live_update import CustomerSnapshot, LiveUpdate
from recsys.customers.online_state import to_seconds
from recsys.decisions.offer_set import ContactPolicy
from recsys.events import Event
from recsys.store import LiveRecord

__all__ = ["EventWriter", "AsyncEventWriter", "IngestResult", "export_stream", "stream_rows"]

#: How long, and how many, applied event ids are remembered per customer (the defaults of
#: ``serving.event_id_ttl_days`` and ``serving.max_event_ids``): see *Idempotency window*.
DEFAULT_EVENT_ID_TTL_S = 30 * 86_400.0
DEFAULT_MAX_EVENT_IDS = 10_000
#: How long contacts are kept when the caller names no horizon: the default policy's.
DEFAULT_CONTACT_HORIZON_S = ContactPolicy().horizon_days * 86_400.0
#: The longest pause between two rounds of a contended request (seconds).
MAX_PAUSE_S = 0.005

Plan = Callable[[Mapping[str, CustomerSnapshot], Sequence[Event]], Mapping[str, LiveUpdate]]


@dataclass(frozen=True)
class IngestResult:
    """``accepted`` applied and stored; ``duplicates`` seen before; ``ignored``: events of
    erased customers, acknowledged and dropped (nothing of theirs is stored)."""

    accepted: int
    duplicates: int
    ignored: int = 0


def encode_update(update: LiveUpdate, version: str | None) -> dict[str, bytes]:
    """The live-record hash fields of ``update`` (layout of ``feature_store.codec``)."""
    fields = {
        keys.LIVE_VIEWS: codec.dumps(update.recent_views),
        keys.LIVE_CART: codec.dumps(update.cart),
        keys.LIVE_PURCHASED: codec.dumps(update.purchased),
        keys.LIVE_DISLIKED: codec.dumps(update.disliked),
        keys.LIVE_FEATURES: codec.dumps(update.features),
        keys.LIVE_ONLINE: codec.dumps(update.online),
    }
    if update.refolded:
        fields[keys.LIVE_USER_VECTOR] = codec.vector_bytes(update.user_vector)
        fields[keys.LIVE_USER_VECTOR_VERSION] = (version or "").encode()
    return fields


def _changed(fields: Mapping[str, bytes], stored: Mapping[bytes, bytes]) -> dict[str, bytes]:
    """The fields whose bytes differ from the stored ones."""
    return {name: value for name, value in fields.items() if stored.get(name.encode()) != value}


def _contacts(events: Sequence[Event]) -> dict[str, float]:
    """The contacts members of a customer's ``offer_sent`` events -> latest send (Unix s)."""
    sent: dict[str, float] = {}
    for event in events:
        contact = event.contact
        if contact is not None:
            member = codec.contact_member(*contact)
            sent[member] = max(sent.get(member, -math.inf), to_seconds(event.timestamp))
    return sent


def _without_vector(record: LiveRecord) -> LiveRecord:
    """A live record whose folded vector belongs to another model version: drop it."""
    return replace(record, user_vector=None)


class _Request:
    """One request's rounds of read, plan and write (see the module docstring), without I/O."""

    def __init__(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        prefix: str,
        cluster: bool,
        maxlen: int,
        horizon_s: float,
        event_id_ttl_s: float = DEFAULT_EVENT_ID_TTL_S,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
        erased: Tombstones,
    ) -> None:
        self.version, self.plan, self.prefix, self.cluster = version, plan, prefix, cluster
        self.erased = erased
        self.maxlen, self.horizon_s = maxlen, horizon_s
        self.event_id_ttl_s, self.max_event_ids = event_id_ttl_s, max_event_ids
        self.total = len(events)
        self.per_customer = Counter(e.customer_id for e in events)
        self.order: dict[int, int] = {}  # id(event) -> position in the request
        self.events: dict[str, list[Event]] = {}
        seen: set[tuple[str, str]] = set()
        for position, event in enumerate(events):
            if event.event_id is not None:
                key = (event.customer_id, event.event_id)
                if key in seen:
                    continue
                seen.add(key)
            self.order[id(event)] = position
            self.events.setdefault(event.customer_id, []).append(event)
        self.pending = list(self.events)
        self.accepted = self.ignored = 0
        self.fresh: dict[str, list[Event]] = {}

    def result(self) -> IngestResult:
        return IngestResult(self.accepted, self.total - self.ignored - self.accepted, self.ignored)

    # -- read -------------------------------------------------------------------------------

    def queue_read(self, pipe: Any, unregistered: set[shards.Shard]) -> None:
        """Queue the round's reads (and, on a cluster, the registration of new shards)."""
        p = self.prefix
        self.groups = shards.group_by_shard(self.cluster, self.pending)
        queue_check(pipe, p, self.erased, self.groups)
        for customer in self.pending:
            pipe.hgetall(keys.customer_live(p, customer))
            if self.version is not None:
                pipe.hgetall(keys.customer_batch(p, customer, self.version))
            ids = self._ids(customer)
            if ids:
                pipe.zmscore(keys.customer_event_ids(p, customer), ids)
        shards.register(pipe, p, [s for s in self.groups if s in unregistered])

    def _ids(self, customer: str) -> list[str]:
        return [e.event_id for e in self.events[customer] if e.event_id is not None]

    def take_read(self, replies: Sequence[Any]) -> list[ScriptCall]:
        """Plan the round from its read replies: the script calls to make (none: done)."""
        it: Iterator[Any] = iter(replies)
        erased = take_check(self.groups, it)
        snapshots: dict[str, CustomerSnapshot] = {}
        stored: dict[str, tuple[Mapping[bytes, bytes], bytes]] = {}
        fresh: dict[str, list[Event]] = {}
        for customer in self.pending:
            live = next(it)
            batch = codec.decode_batch(next(it)) if self.version is not None else None
            mine = self.events[customer]
            ids = self._ids(customer)
            if ids:
                seen = {i for i, score in zip(ids, next(it), strict=True) if score is not None}
                mine = [e for e in mine if e.event_id is None or e.event_id not in seen]
            if customer in erased:
                self.ignored += self.per_customer[customer]
                continue
            if not mine:
                continue  # every event of theirs was applied before: duplicates
            fresh[customer] = mine
            snapshots[customer] = self._snapshot(customer, live, batch)
            stored[customer] = (live, live.get(keys.LIVE_REVISION.encode(), b"0"))
        self.fresh = fresh
        if not fresh:
            self.pending = []
            return []
        everything = [e for mine in fresh.values() for e in mine]
        updates = self.plan(snapshots, everything)
        return self._calls(fresh, updates, stored)

    def _snapshot(self, customer: str, live: Mapping[bytes, bytes], batch: Any) -> CustomerSnapshot:
        raw_online = live.get(keys.LIVE_ONLINE.encode())
        vector_version = live.get(keys.LIVE_USER_VECTOR_VERSION.encode())
        record = codec.decode_live(live)
        if record.user_vector is not None and vector_version not in (
            None,
            (self.version or "").encode(),
        ):
            record = _without_vector(record)
        return CustomerSnapshot(
            customer_id=customer,
            batch=batch,
            live=record,
            online=orjson.loads(raw_online) if raw_online else None,
        )

    def _calls(
        self,
        fresh: Mapping[str, list[Event]],
        updates: Mapping[str, LiveUpdate],
        stored: Mapping[str, tuple[Mapping[bytes, bytes], bytes]],
    ) -> list[ScriptCall]:
        now = time.time()
        cutoff = now - self.horizon_s
        maxlen = shards.shard_maxlen(self.cluster, self.maxlen)
        calls = []
        for shard, group in shards.group_by_shard(self.cluster, fresh).items():
            writes: list[CustomerWrite] = []
            rows: list[tuple[int, int, dict[str, str]]] = []
            for index, customer in enumerate(group):
                mine = fresh[customer]
                live, revision = stored[customer]
                fields = _changed(encode_update(updates[customer], self.version), live)
                ids = [e.event_id for e in mine if e.event_id is not None]
                writes.append(CustomerWrite(customer, revision, ids, fields, _contacts(mine)))
                rows += [(self.order[id(e)], index, e.to_row()) for e in mine]
            rows.sort(key=lambda r: r[0])  # the request's order
            stream_rows_ = [(owner, row) for _, owner, row in rows]
            calls.append(
                script_call(
                    self.prefix,
                    shard,
                    maxlen,
                    cutoff,
                    self.horizon_s,
                    writes,
                    stream_rows_,
                    now=now,
                    event_id_ttl_s=self.event_id_ttl_s,
                    max_event_ids=self.max_event_ids,
                    tombstones=self.erased,
                )
            )
        return calls

    # -- write ------------------------------------------------------------------------------

    def take_write(self, calls: Sequence[ScriptCall], replies: Sequence[Any]) -> None:
        """Count what the scripts applied; the conflicting customers stay pending."""
        pending = []
        for call, reply in zip(calls, replies, strict=True):
            for customer, status in statuses(call, reply).items():
                if status == APPLIED:
                    self.accepted += len(self.fresh[customer])
                elif status == ERASED:
                    self.ignored += self.per_customer[customer]
                else:
                    pending.append(customer)
        self.pending = pending


def _pause(round_: int) -> float:
    """A random pause before round ``round_`` (2, 3, ...) of a contended request."""
    return random.uniform(0, min(0.0005 * round_, MAX_PAUSE_S))


class _Writer:
    def __init__(
        self,
        client: Any,
        prefix: str,
        stream_maxlen: int,
        *,
        contact_horizon_s: float = DEFAULT_CONTACT_HORIZON_S,
        event_id_ttl_s: float = DEFAULT_EVENT_ID_TTL_S,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
        tombstones: Resolver | None = None,  # the erased set's digests (default: the store's)
    ) -> None:
        self.client = client
        self.tombstones = tombstones or Resolver(client, prefix)
        self.prefix = prefix
        self.stream_maxlen = max(int(stream_maxlen), 0)
        self.contact_horizon_s = contact_horizon_s
        self.event_id_ttl_s = float(event_id_ttl_s)
        self.max_event_ids = max(int(max_event_ids), 1)
        self.cluster = shards.is_cluster(client)
        self._script = client.register_script(WRITE)
        self._registered: set[shards.Shard] = {None}

    def _request(
        self, events: Sequence[Event], version: str | None, plan: Plan, horizon_s: float | None
    ) -> _Request:
        return _Request(
            events,
            version,
            plan,
            prefix=self.prefix,
            cluster=self.cluster,
            maxlen=self.stream_maxlen,
            horizon_s=self.contact_horizon_s if horizon_s is None else horizon_s,
            event_id_ttl_s=self.event_id_ttl_s,
            max_event_ids=self.max_event_ids,
            erased=self.tombstones.resolved(),
        )

    def _unregistered(self, request: _Request) -> set[shards.Shard]:
        if not self.cluster:
            return set()
        groups = shards.group_by_shard(True, request.pending)
        return {s for s in groups if s not in self._registered}


class EventWriter(_Writer):
    """Writes requests of events on a sync client (see the module docstring)."""

    def ingest(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
    ) -> IngestResult:
        """Apply and store ``events`` (validated); ``version`` is the serving model's.

        ``contact_horizon_s``: how long sent offers are kept (the serving catalogue's longest
        contact-policy window; default the writer's)."""
        self.tombstones.get()
        request = self._request(events, version, plan, contact_horizon_s)
        round_ = 1
        while request.pending:
            unregistered = self._unregistered(request)
            pipe = self.client.pipeline(transaction=False)
            request.queue_read(pipe, unregistered)
            with store_errors("read before event write"):
                replies = pipe.execute()
            self._registered |= unregistered
            calls = request.take_read(replies)
            with store_errors("event write"):
                written = [self._script(keys=c.keys, args=c.args) for c in calls]
            request.take_write(calls, written)
            if request.pending:
                round_ += 1
                time.sleep(_pause(round_))
        return request.result()


class AsyncEventWriter(_Writer):
    """Writes requests of events on a ``redis.asyncio`` client, on the event loop (the route's
    writer); the same rounds as :class:`EventWriter`. On a cluster the scripts of a request's
    slots run concurrently."""

    async def ingest(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
    ) -> IngestResult:
        """:meth:`EventWriter.ingest`, awaited."""
        await self.tombstones.get_async()
        request = self._request(events, version, plan, contact_horizon_s)
        round_ = 1
        while request.pending:
            unregistered = self._unregistered(request)
            pipe = self.client.pipeline(transaction=False)
            request.queue_read(pipe, unregistered)
            with store_errors("read before event write"):
                replies = await pipe.execute()
            self._registered |= unregistered
            calls = request.take_read(replies)
            with store_errors("event write"):
                if len(calls) == 1:
                    written = [await self._script(keys=calls[0].keys, args=calls[0].args)]
                else:
                    written = await asyncio.gather(
                        *(self._script(keys=c.keys, args=c.args) for c in calls)
                    )
            request.take_write(calls, written)
            if request.pending:
                round_ += 1
                await asyncio.sleep(_pause(round_))
        return request.result()

    async def aclose(self) -> None:
        await self.client.aclose()
