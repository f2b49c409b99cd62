"""One request of events, without I/O: its rounds of read, plan and write (``feature_store.ingest``
runs them on a sync or an asyncio client).

:class:`Request` groups the events by customer once, names the commands of a round's read
(:meth:`Request.read_commands`), plans the customers' new records from the replies and builds
the write scripts' calls (:meth:`Request.take_read`), then counts what the scripts applied
(:meth:`Request.take_write`). See ``feature_store.ingest`` for the protocol and its guarantees.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from feature_store import codec, feature_pack, keys, shards
from feature_store.ingest_script import (
    APPLIED,
    ERASED,
    CustomerWrite,
    ScriptCall,
    returned_counts,
    script_call,
    statuses,
)
from feature_store.offer_attribution import Attribution, SendCells, count_commands
from feature_store.online_cache import OnlineCache
from feature_store.tombstones import Tombstones, queue_check, take_check
from recsys.customers.live_update import CustomerSnapshot, LiveUpdate
from recsys.customers.online_state import to_seconds
from recsys.events import Event
from recsys.store import LiveRecord

Plan = Callable[[Mapping[str, CustomerSnapshot], Sequence[Event]], Mapping[str, LiveUpdate]]
#: The cells of the ``offer_sent`` events given (the customers' planned records: a send's cell is
#: the customer's profile once the request's events are applied).
Cells = Callable[
    [Mapping[str, CustomerSnapshot], Mapping[str, LiveUpdate], Sequence[Event]], SendCells
]


@dataclass(frozen=True)
class OfferCounting:
    """What a request needs to count its offer events in the write (``offer_attribution``)."""

    attribution: Attribution
    cells: Cells


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
    }
    if update.refolded:
        fields[keys.LIVE_USER_VECTOR] = codec.vector_bytes(update.user_vector)
        fields[keys.LIVE_USER_VECTOR_VERSION] = (version or "").encode()
    return fields


#: What the event path reads of a customer's live hash (``HMGET``): the record, the revision and
#: the online state of a store written before (``feature_store.keys``: legacy ``agg``).
READ_LIVE = (*keys.LIVE_RECORD, keys.LIVE_REVISION, keys.LEGACY_LIVE_ONLINE)
_READ_LIVE = tuple(name.encode() for name in READ_LIVE)
#: What the plan uses of the batch record: its features and purchase history.
READ_BATCH = (
    keys.BATCH_FEATURES,
    keys.BATCH_PACKED_FEATURES,
    keys.BATCH_HISTORY_ITEMS,
    keys.BATCH_HISTORY_COUNTS,
)
_READ_BATCH = tuple(name.encode() for name in READ_BATCH)
_B_REVISION = keys.LIVE_REVISION.encode()
_B_LEGACY_ONLINE = keys.LEGACY_LIVE_ONLINE.encode()


def _fields(names: Sequence[bytes], reply: Sequence[bytes | None]) -> dict[bytes, bytes]:
    """An ``HMGET`` reply as field -> value, absent fields left out."""
    return {name: value for name, value in zip(names, reply, strict=True) if value is not None}


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


class _Commands(list[tuple[Any, ...]]):
    """A command list that takes the erased check's queueing (``tombstones.queue_check``)."""

    def smismember(self, name: str, members: Sequence[str]) -> None:
        self.append(("SMISMEMBER", name, *members))


class Request:
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
        event_id_ttl_s: float,
        max_event_ids: int,
        erased: Tombstones,
        offers: OfferCounting | None = None,
        online_cache: OnlineCache | None = None,
    ) -> None:
        self.version, self.plan, self.prefix, self.cluster = version, plan, prefix, cluster
        self.offers = offers
        self.online_cache = online_cache
        #: customer -> the online state a round's script writes: (bytes, parsed)
        self.online_written: dict[str, tuple[bytes, Any]] = {}
        self.bumps: Counter[str] = Counter()  # counts the scripts returned (Redis Cluster)
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
        #: id() of each event applied by a script (``feature_store.ingest_groups`` answers each
        #: grouped request from it)
        self.applied: set[int] = set()

    def result(self) -> IngestResult:
        return IngestResult(self.accepted, self.total - self.ignored - self.accepted, self.ignored)

    # -- read -------------------------------------------------------------------------------

    def read_commands(self, unregistered: set[shards.Shard]) -> list[tuple[Any, ...]]:
        """The round's reads (and, on a cluster, the registration of new shards), in order:
        one pipelined round trip (``feature_store.packed``)."""
        p = self.prefix
        self.groups = shards.group_by_shard(self.cluster, self.pending)
        commands = _Commands()
        if self.version is not None:  # to unpack the batch records' features
            commands.append(("GET", keys.feature_schema(p, self.version)))
        queue_check(commands, p, self.erased, self.groups)
        for customer in self.pending:
            commands.append(("HMGET", keys.customer_live(p, customer), *READ_LIVE))
            commands.append(("GET", keys.customer_online(p, customer)))
            if self.version is not None:
                batch = keys.customer_batch(p, customer, self.version)
                commands.append(("HMGET", batch, *READ_BATCH))
            ids = self._ids(customer)
            if ids:
                commands.append(("ZMSCORE", keys.customer_event_ids(p, customer), *ids))
        slots = shards.slots_of([s for s in self.groups if s in unregistered])
        if slots:
            commands.append(("SADD", keys.stream_shards(p), *slots))
        return commands

    def _ids(self, customer: str) -> list[str]:
        return [e.event_id for e in self.events[customer] if e.event_id is not None]

    def take_read(self, replies: Sequence[Any]) -> list[ScriptCall]:
        """Plan the round from its read replies: the script calls to make (none: done)."""
        it: Iterator[Any] = iter(replies)
        if self.version is not None:
            feature_pack.use(next(it))
        erased = take_check(self.groups, it)
        snapshots: dict[str, CustomerSnapshot] = {}
        stored: dict[str, tuple[Mapping[bytes, bytes], bytes]] = {}
        fresh: dict[str, list[Event]] = {}
        for customer in self.pending:
            live = _fields(_READ_LIVE, next(it))
            online = next(it) or live.get(_B_LEGACY_ONLINE)  # own key, else a legacy field
            batch = None
            if self.version is not None:
                batch = codec.decode_batch(_fields(_READ_BATCH, next(it)))
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
            snapshots[customer] = self._snapshot(customer, live, online, batch)
            stored[customer] = (live, live.get(_B_REVISION, b"0"))
        self.fresh = fresh
        if not fresh:
            self.pending = []
            return []
        everything = [e for mine in fresh.values() for e in mine]
        updates = self.plan(snapshots, everything)
        cells: SendCells = {}
        if self.offers is not None:
            sends = self.offers.attribution.sends(everything)
            if sends:
                cells = self.offers.cells(snapshots, updates, sends)
        return self._calls(fresh, updates, stored, cells)

    def _snapshot(
        self, customer: str, live: Mapping[bytes, bytes], raw_online: bytes | None, batch: Any
    ) -> CustomerSnapshot:
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
            online=self._parse_online(customer, raw_online) if raw_online else None,
        )

    def _parse_online(self, customer: str, raw: bytes) -> Any:
        if self.online_cache is None:
            return orjson.loads(raw)
        return self.online_cache.parse(customer, raw)

    def _calls(
        self,
        fresh: Mapping[str, list[Event]],
        updates: Mapping[str, LiveUpdate],
        stored: Mapping[str, tuple[Mapping[bytes, bytes], bytes]],
        cells: SendCells,
    ) -> list[ScriptCall]:
        now = time.time()
        attribution = self.offers.attribution if self.offers is not None else None
        cutoff = now - self.horizon_s
        maxlen = shards.shard_maxlen(self.cluster, self.maxlen)
        calls = []
        for shard, group in shards.group_by_shard(self.cluster, fresh).items():
            writes: list[CustomerWrite] = []
            rows: list[tuple[int, int, dict[str, str]]] = []
            for index, customer in enumerate(group):
                mine = fresh[customer]
                live, revision = stored[customer]
                update = updates[customer]
                fields = _changed(encode_update(update, self.version), live)
                ids = [e.event_id for e in mine if e.event_id is not None]
                online = codec.dumps(update.online)
                self.online_written[customer] = (online, update.online)
                ops = attribution.ops(mine, cells) if attribution is not None else []
                writes.append(
                    CustomerWrite(customer, revision, ids, fields, _contacts(mine), online, ops)
                )
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
                    attribution=attribution,
                    apply_counts=not self.cluster,
                )
            )
        return calls

    # -- write ------------------------------------------------------------------------------

    def take_write(self, calls: Sequence[ScriptCall], replies: Sequence[Any]) -> None:
        """Count what the scripts applied; the conflicting customers stay pending."""
        pending = []
        for call, reply in zip(calls, replies, strict=True):
            self.bumps.update(returned_counts(reply))
            for customer, status in statuses(call, reply).items():
                if status == APPLIED:
                    self.accepted += len(self.fresh[customer])
                    self.applied.update(id(e) for e in self.fresh[customer])
                    if self.online_cache is not None:  # what Redis holds now: read next time
                        self.online_cache.put(customer, *self.online_written[customer])
                elif status == ERASED:
                    self.ignored += self.per_customer[customer]
                else:
                    pending.append(customer)
        self.pending = pending

    def count_commands(self) -> list[tuple[Any, ...]]:
        """Once no customer is pending: the commands writing the offer counts the scripts
        returned (Redis Cluster; none on one server, where the scripts wrote them)."""
        if self.offers is None or not self.bumps:
            return []
        return count_commands(self.prefix, self.offers.attribution, self.bumps)
