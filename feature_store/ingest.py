"""Events into Redis: idempotent, durable and applied to the live records, all or nothing.

:meth:`EventWriter.ingest` takes one request's validated events and:

1. drops repeats of an ``event_id`` inside the request (the first one counts);
2. reads, in one pipelined round trip, which customers are erased (``<p>:erased``: their events
   are acknowledged as ``ignored``, and nothing of theirs is planned or stored), each
   customer's live record (with its revision ``rev``
   and the online state ``agg``), their batch record of the serving model version and which of
   the request's event ids their ``ids`` sorted set already holds;
3. calls ``plan`` (pure: ``recsys.live_update.plan_updates`` bound to the model) with what it
   read and the events not seen before;
4. writes in **one** Lua script (``EVALSHA``): it first checks that no customer was erased
   meanwhile, every customer's ``rev`` is still the one read and no event id has been applied
   meanwhile, and only then adds the event ids to the ``ids`` sorted sets (score: when
   applied; see *Idempotency window*), replaces the live-record fields, bumps ``rev``, adds every
   ``offer_sent`` to the customer's contacts (``ZADD`` member ``offer_id|channel``, score the
   event time; entries older than the contact horizon -- the longest window of the contact
   policy -- are trimmed, and the key expires a horizon after its newest entry) and appends
   every accepted event to the stream (``XADD MAXLEN ~ event_stream_maxlen``). A check that fails
   writes nothing and the whole request is re-read and re-planned (optimistic concurrency, as
   ``WATCH`` would do, without its round trips), so two writers of one customer never lose an
   update and an event is never applied twice.

Idempotency window: a customer's ``ids`` sorted set keeps the ids applied in the last
``event_id_ttl_s`` (``serving.event_id_ttl_days``, 30 days by default) and at most
``max_event_ids`` (``serving.max_event_ids``, 10,000) of them, the newest; older ones are
trimmed on each write, and the key expires ``event_id_ttl_s`` after the last write. So the
per-customer state is bounded: a repeat of an event id older than that window (or beyond that
many newer ids) is applied again. (Stores written before kept every id, unbounded, in a plain
set ``evt``: it is no longer read or written, only exported and erased.)

The 202 is answered only after the script returned, so an accepted event is in the stream (and
in Redis's append-only file, within its fsync policy) before the client hears of it.

Live-record fields written (the layout of ``feature_store.codec``, plus this module's own):
``views``, ``cart``, ``purchased``, ``disliked``, ``features``, ``u`` (folded-in vector, empty:
none), ``uv`` (the model version ``u`` was folded against), ``agg`` (the online state of
``recsys.online_features``, JSON) and ``rev`` (revision, an integer).

Stream entries carry the events-format columns as fields (``recsys.events.Event.to_row``), so
:func:`export_stream` writes a file ``recsys train`` reads as it is.

Redis Cluster: the script touches the stream and every customer of the request, so it needs
them on one slot; on a cluster, send one customer per request (see the known gaps).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, cast

import orjson

from feature_store import codec, keys
from feature_store.connection import RedisClient, store_errors
from recsys.errors import StoreUnavailableError
from recsys.events import Event
from recsys.live_update import CustomerSnapshot, LiveUpdate
from recsys.offers import ContactPolicy
from recsys.online_features import to_seconds
from recsys.schema import EVENT_COLUMNS
from recsys.store import LiveRecord

LIVE_ONLINE = "agg"
LIVE_REVISION = "rev"
LIVE_VECTOR_VERSION = "uv"
#: How long contacts are kept when the caller names no horizon: the default policy's.
DEFAULT_CONTACT_HORIZON_S = ContactPolicy().horizon_days * 86_400.0
#: How long, and how many, applied event ids are remembered per customer (the defaults of
#: ``serving.event_id_ttl_days`` and ``serving.max_event_ids``).
DEFAULT_EVENT_ID_TTL_S = 30 * 86_400.0
DEFAULT_MAX_EVENT_IDS = 10_000

_WRITE = """
local maxlen = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local cutoff = ARGV[3]
local horizon = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local id_ttl = tonumber(ARGV[6])
local id_cap = tonumber(ARGV[7])
local pos = 8
-- ARGV holds counted lists: a count, then that many values
local function take_list()
  local count = tonumber(ARGV[pos])
  local list = {}
  for j = 1, count do list[j] = ARGV[pos + j] end
  pos = pos + count + 1
  return list
end
local plans = {}
for i = 1, n do
  local live, evt, contacts = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if redis.call('SISMEMBER', KEYS[3 * n + 2], ARGV[pos]) == 1 then return -1 end
  pos = pos + 1
  local rev = redis.call('HGET', live, 'rev')
  if not rev then rev = '0' end
  if rev ~= ARGV[pos] then return -1 end
  pos = pos + 1
  local ids = take_list()
  for j = 1, #ids do
    if redis.call('ZSCORE', evt, ids[j]) then return -1 end
  end
  local fields = take_list()
  local sent = take_list()
  plans[i] = {live, evt, ids, fields, contacts, sent}
end
for i = 1, n do
  local plan = plans[i]
  if #plan[3] > 0 then
    local scored = {}
    for j = 1, #plan[3] do
      scored[2 * j - 1] = now
      scored[2 * j] = plan[3][j]
    end
    redis.call('ZADD', plan[2], unpack(scored))
    redis.call('ZREMRANGEBYSCORE', plan[2], '-inf', '(' .. (now - id_ttl))
    redis.call('ZREMRANGEBYRANK', plan[2], 0, -(id_cap + 1))
    redis.call('EXPIRE', plan[2], math.ceil(id_ttl))
  end
  if #plan[4] > 0 then redis.call('HSET', plan[1], unpack(plan[4])) end
  redis.call('HINCRBY', plan[1], 'rev', 1)
  if #plan[6] > 0 then
    redis.call('ZADD', plan[5], unpack(plan[6]))
    redis.call('ZREMRANGEBYSCORE', plan[5], '-inf', '(' .. cutoff)
    local newest = redis.call('ZRANGE', plan[5], -1, -1, 'WITHSCORES')
    if #newest > 0 then
      redis.call('EXPIREAT', plan[5], math.ceil(tonumber(newest[2]) + horizon))
    end
  end
end
local nevents = tonumber(ARGV[pos])
pos = pos + 1
for j = 1, nevents do
  local nkv = tonumber(ARGV[pos])
  pos = pos + 1
  local args
  if maxlen > 0 then
    args = {KEYS[1], 'MAXLEN', '~', maxlen, '*'}
  else
    args = {KEYS[1], '*'}
  end
  for k = 1, nkv do
    args[#args + 1] = ARGV[pos]
    pos = pos + 1
  end
  redis.call('XADD', unpack(args))
end
return nevents
"""
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
        codec.LIVE_VIEWS: codec.dumps(update.recent_views),
        codec.LIVE_CART: codec.dumps(update.cart),
        codec.LIVE_PURCHASED: codec.dumps(update.purchased),
        codec.LIVE_DISLIKED: codec.dumps(update.disliked),
        codec.LIVE_FEATURES: codec.dumps(update.features),
        LIVE_ONLINE: codec.dumps(update.online),
    }
    if update.refolded:
        fields[codec.LIVE_USER_VECTOR] = codec.vector_bytes(update.user_vector)
        fields[LIVE_VECTOR_VERSION] = (version or "").encode()
    return fields


def _unique(events: Sequence[Event]) -> tuple[list[Event], int]:
    """Events with repeated ids (inside the request) removed, and how many were removed."""
    seen: set[tuple[str, str]] = set()
    kept: list[Event] = []
    for event in events:
        if event.event_id is not None:
            key = (event.customer_id, event.event_id)
            if key in seen:
                continue
            seen.add(key)
        kept.append(event)
    return kept, len(events) - len(kept)


class EventWriter:
    """Writes requests of events (see the module docstring); one instance per process."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        stream_maxlen: int,
        *,
        max_attempts: int = 20,
        contact_horizon_s: float = DEFAULT_CONTACT_HORIZON_S,
        event_id_ttl_s: float = DEFAULT_EVENT_ID_TTL_S,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = max(int(stream_maxlen), 0)
        self.max_attempts = max_attempts
        self.contact_horizon_s = contact_horizon_s
        self.event_id_ttl_s = float(event_id_ttl_s)
        self.max_event_ids = max(int(max_event_ids), 1)
        self._script = client.register_script(_WRITE)

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
        horizon = self.contact_horizon_s if contact_horizon_s is None else contact_horizon_s
        unique, _ = _unique(events)
        customers = list(dict.fromkeys(e.customer_id for e in unique))
        for attempt in range(self.max_attempts):
            erased, snapshots, revisions, seen = self._read(customers, unique, version)
            ignored = sum(1 for e in events if e.customer_id in erased)
            fresh = [
                e
                for e in unique
                if e.customer_id not in erased and (e.customer_id, e.event_id) not in seen
            ]
            if not fresh:
                return IngestResult(0, len(events) - ignored, ignored)
            live = {c: s for c, s in snapshots.items() if c not in erased}
            updates = plan(live, fresh)
            if self._write(fresh, updates, revisions, version, horizon):
                return IngestResult(len(fresh), len(events) - ignored - len(fresh), ignored)
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # jitter
        raise StoreUnavailableError(
            f"events of {len(customers)} customer(s) kept conflicting with concurrent writes"
        )

    def _read(
        self, customers: list[str], events: Sequence[Event], version: str | None
    ) -> tuple[
        set[str], dict[str, CustomerSnapshot], dict[str, bytes], set[tuple[str, str | None]]
    ]:
        ids: dict[str, list[str]] = {c: [] for c in customers}
        for event in events:
            if event.event_id is not None:
                ids[event.customer_id].append(event.event_id)
        p = self.prefix
        pipe = self.client.pipeline(transaction=False)
        if customers:
            pipe.smismember(keys.erased_customers(p), customers)
        for customer in customers:
            pipe.hgetall(keys.customer_live(p, customer))
            if version is not None:
                pipe.hgetall(keys.customer_batch(p, customer, version))
            if ids[customer]:
                pipe.zmscore(keys.customer_event_ids(p, customer), ids[customer])
        with store_errors("read before event write"):
            replies: Iterator[Any] = iter(pipe.execute())
        flags = next(replies) if customers else []
        erased = {c for c, hit in zip(customers, flags, strict=True) if hit}
        snapshots: dict[str, CustomerSnapshot] = {}
        revisions: dict[str, bytes] = {}
        seen: set[tuple[str, str | None]] = set()
        for customer in customers:
            live = next(replies)
            batch = codec.decode_batch(next(replies)) if version is not None else None
            if ids[customer]:
                flags = next(replies)
                seen.update(
                    (customer, i)
                    for i, score in zip(ids[customer], flags, strict=True)
                    if score is not None
                )
            raw_online = live.get(LIVE_ONLINE.encode())
            vector_version = live.get(LIVE_VECTOR_VERSION.encode())
            record = codec.decode_live(live)
            if record.user_vector is not None and vector_version not in (
                None,
                (version or "").encode(),
            ):
                record = _without_vector(record)
            snapshots[customer] = CustomerSnapshot(
                customer_id=customer,
                batch=batch,
                live=record,
                online=orjson.loads(raw_online) if raw_online else None,
            )
            revisions[customer] = live.get(LIVE_REVISION.encode(), b"0")
        return erased, snapshots, revisions, seen

    def _write(
        self,
        events: Sequence[Event],
        updates: Mapping[str, LiveUpdate],
        revisions: Mapping[str, bytes],
        version: str | None,
        horizon_s: float,
    ) -> bool:
        p = self.prefix
        customers = list(dict.fromkeys(e.customer_id for e in events))
        script_keys: list[str] = [keys.event_stream(p)]
        now = time.time()
        cutoff = repr(now - horizon_s)
        args: list[Any] = [self.stream_maxlen, len(customers), cutoff, repr(float(horizon_s))]
        args += [repr(now), repr(self.event_id_ttl_s), self.max_event_ids]
        for customer in customers:
            script_keys += [
                keys.customer_live(p, customer),
                keys.customer_event_ids(p, customer),
                keys.customer_contacts(p, customer),
            ]
            mine = [e for e in events if e.customer_id == customer]
            ids = [e.event_id for e in mine if e.event_id]
            fields = encode_update(updates[customer], version)
            args += [customer, revisions[customer], len(ids), *ids, 2 * len(fields)]
            for name, value in fields.items():
                args += [name, value]
            sent = _contacts(mine)
            args.append(2 * len(sent))
            for member, score in sent.items():
                args += [repr(score), member]
        script_keys.append(keys.erased_customers(p))
        args.append(len(events))
        for event in events:
            row = event.to_row()
            args.append(2 * len(row))
            for column, text in row.items():
                args += [column, text]
        with store_errors("event write"):
            written = self._script(keys=script_keys, args=args)
        return int(written) >= 0


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


# -- export ---------------------------------------------------------------------------------


def _open_text(path: Path, *, gzipped: bool) -> IO[str]:
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "wb"), encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def stream_rows(
    client: RedisClient,
    prefix: str,
    chunk: int = 10_000,
    exclude: Collection[str] = frozenset(),
) -> Iterator[dict[str, str]]:
    """Every entry of the event stream, oldest first, as events-format text columns, but those
    of the customers in ``exclude`` (the erased ones)."""
    stream = keys.event_stream(prefix)
    start = "-"
    while True:
        with store_errors("export of the event stream"):
            entries = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                client.xrange(stream, min=start, max="+", count=chunk),
            )
        for _, fields in entries:
            row = {k.decode(): v.decode() for k, v in fields.items()}
            if row.get("customer_id") not in exclude:
                yield row
        if len(entries) < chunk:
            return
        start = "(" + entries[-1][0].decode()


def export_stream(
    client: RedisClient,
    prefix: str,
    path: Path,
    chunk: int = 10_000,
    exclude: Collection[str] = frozenset(),
) -> int:
    """Write the event stream to ``path`` as an events file (CSV; gzip when it ends ``.gz``),
    without the events of the customers in ``exclude``.

    Written to a temporary file beside ``path`` and renamed into place when complete.
    Returns the number of events written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with _open_text(tmp, gzipped=path.name.endswith(".gz")) as fh:  # the target's name
            writer = csv.DictWriter(fh, fieldnames=list(EVENT_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in stream_rows(client, prefix, chunk, exclude):
                writer.writerow(row)
                count += 1
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
