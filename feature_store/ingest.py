"""Events into Redis: idempotent, durable, applied to live records, writers serialized per customer.

:class:`EventWriter` (sync) and :class:`AsyncEventWriter` (``redis.asyncio``, the route's) take one
request's validated events and run the same rounds (``feature_store.ingest_request.Request``
holds them; only the I/O differs):

1. Once per request: repeats of an ``event_id`` inside it are dropped (the first counts) and the
   events are grouped by customer (one pass; nothing below loops over the events per customer).
2. **Read**, one pipelined round trip for the customers still pending: which are erased (the
   digests of ``feature_store.tombstones`` in the erased set of their shard,
   ``feature_store.shards``), each one's live record fields (with its revision ``rev``), online
   state (its own key, ``feature_store.keys.customer_online``; in a store written before, the
   live hash's ``agg`` field), the batch record fields the plan uses (features and purchase
   history) of the serving model version, and which of their event ids their ``ids`` sorted set
   already holds.
3. **Plan** (pure: ``recsys.customers.live_update.plan_updates`` bound to the model) each
   customer's new live record from what was read and the events not seen before.
4. **Write**: one Lua script (``feature_store.ingest_script``) per shard -- on one server, one
   script for the whole request; on Redis Cluster one per hash slot the batch touches, since a
   script's keys must share a slot. Only the live-record fields whose bytes changed are sent;
   the online state goes to its own key (the script deletes a legacy ``agg`` field then:
   migrated on first write). The same script counts the applied customers' offer events and
   attributes their purchases (``feature_store.offer_attribution``; on Redis Cluster it returns
   the counts, written after the round's scripts): a request is one read and one write.

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
none), ``uv`` (the model version ``u`` was folded against) and ``rev`` (revision, an integer);
and the online state of ``recsys.customers.online_state`` (JSON) in the key ``online``.

Stream entries carry the events-format columns as fields (``recsys.events.Event.to_row``), so
:func:`feature_store.event_stream.export_stream` writes a file ``recsys train`` reads as it is.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from feature_store import packed, shards
from feature_store.connection import store_errors
from feature_store.event_stream import export_stream, stream_rows
from feature_store.ingest_request import IngestResult, OfferCounting, Plan, Request
from feature_store.ingest_script import WRITE
from feature_store.multiplexed import MultiplexedConnection
from feature_store.online_cache import OnlineCache
from feature_store.tombstones import Resolver
from recsys.decisions.offer_set import ContactPolicy
from recsys.errors import InternalError
from recsys.events import Event

__all__ = [
    "EventWriter",
    "AsyncEventWriter",
    "IngestResult",
    "OfferCounting",
    "export_stream",
    "stream_rows",
]

#: How long, and how many, applied event ids are remembered per customer (the defaults of
#: ``serving.event_id_ttl_days`` and ``serving.max_event_ids``): see *Idempotency window*.
DEFAULT_EVENT_ID_TTL_S = 30 * 86_400.0
DEFAULT_MAX_EVENT_IDS = 10_000
#: How long contacts are kept when the caller names no horizon: the default policy's.
DEFAULT_CONTACT_HORIZON_S = ContactPolicy().horizon_days * 86_400.0
#: The longest pause between two rounds of a contended request (seconds).
MAX_PAUSE_S = 0.005


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
        script = client.register_script(WRITE)
        self._sha: str = script.sha
        # (keys=, args=) -> reply: on one server EVALSHA packed by hiredis (feature_store.packed:
        # a batch's script has thousands of arguments); on a cluster redis-py's script object
        self._script: Any = script if self.cluster else self._packed_script
        self._registered: set[shards.Shard] = {None}
        #: the online states this writer read or wrote last, parsed (``feature_store.online_cache``)
        self.online_cache = OnlineCache()

    def _packed_script(self, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        raise NotImplementedError  # the sync and the asyncio writer's own

    def _evalsha(self, keys_: Sequence[str], args: Sequence[Any]) -> packed.Command:
        return ("EVALSHA", self._sha, len(keys_), *keys_, *args)

    def _request(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        horizon_s: float | None,
        offers: OfferCounting | None,
    ) -> Request:
        return Request(
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
            offers=offers,
            online_cache=self.online_cache,
        )

    def _unregistered(self, request: Request) -> set[shards.Shard]:
        if not self.cluster:
            return set()
        groups = shards.group_by_shard(True, request.pending)
        return {s for s in groups if s not in self._registered}


class EventWriter(_Writer):
    """Writes requests of events on a sync client (see the module docstring)."""

    def _packed_script(self, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return packed.execute(self.client, [self._evalsha(keys, args)])[0]
        except NoScriptError:  # a restarted or flushed server: load it, once
            self.client.script_load(WRITE)
            return packed.execute(self.client, [self._evalsha(keys, args)])[0]

    def ingest(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
        offers: OfferCounting | None = None,
    ) -> IngestResult:
        """Apply and store ``events`` (validated); ``version`` is the serving model's.

        ``contact_horizon_s``: how long sent offers are kept (the serving catalogue's longest
        contact-policy window; default the writer's); ``offers``: count the offer events and
        attribute the purchases (``feature_store.offer_attribution``; None: not counted)."""
        self.tombstones.get()
        request = self._request(events, version, plan, contact_horizon_s, offers)
        round_ = 1
        while request.pending:
            unregistered = self._unregistered(request)
            with store_errors("read before event write"):
                replies = packed.execute(self.client, request.read_commands(unregistered))
            self._registered |= unregistered
            calls = request.take_read(replies)
            with store_errors("event write"):
                written = [self._script(keys=c.keys, args=c.args) for c in calls]
            request.take_write(calls, written)
            if request.pending:
                round_ += 1
                time.sleep(_pause(round_))
        counts = request.count_commands()
        if counts:
            with store_errors("offer counts write"):
                packed.execute(self.client, counts)
        return request.result()


class AsyncEventWriter(_Writer):
    """Writes requests of events on a ``redis.asyncio`` client, on the event loop (the route's
    writer); the same rounds as :class:`EventWriter`. On a cluster the scripts of a request's
    slots run concurrently.

    ``multiplexed``: on one server, a :class:`~feature_store.multiplexed.MultiplexedConnection`
    of the writer's own carries the reads and the script (``EVALSHA``; after a ``NOSCRIPT``
    answer from a restarted or flushed server, ``EVAL`` with the text, which loads it), packed
    and parsed by hiredis with none of redis.asyncio's pool and per-command work (measured:
    about 250 µs of CPU less per round trip, two per request); the client then serves only
    ``aclose``."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        stream_maxlen: int,
        *,
        multiplexed: MultiplexedConnection | None = None,
        **options: Any,
    ) -> None:
        super().__init__(client, prefix, stream_maxlen, **options)
        self.multiplexed = None if self.cluster else multiplexed
        #: customer -> done when the request writing them now finishes (see :meth:`_claim`)
        self._busy: dict[str, asyncio.Future[None]] = {}

    async def _claim(self, customers: Sequence[str]) -> asyncio.Future[None]:
        """Wait until no other request of this writer is writing any of ``customers``, then
        hold them all (all at once: no request holds some while waiting for others, so none
        waits on another forever). Released by :meth:`_release`."""
        while True:
            busy = {id(f): f for c in customers if (f := self._busy.get(c)) is not None}
            if not busy:
                break
            await asyncio.wait(busy.values())
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for customer in customers:
            self._busy[customer] = mine
        return mine

    def _release(self, customers: Sequence[str], mine: asyncio.Future[None]) -> None:
        for customer in customers:
            if self._busy.get(customer) is mine:
                del self._busy[customer]
        mine.set_result(None)

    async def _execute(self, commands: Sequence[packed.Command]) -> list[Any]:
        if self.multiplexed is not None:
            return await self.multiplexed.execute(commands)
        return await packed.execute_async(self.client, commands)

    async def _packed_script(self, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self.multiplexed is not None:
            # by its SHA1 (the script's 5 KB of text are not packed, sent and hashed again on
            # every event); a server without it (restarted, flushed) answers NOSCRIPT without
            # running anything, and EVAL then runs it and loads it for the next calls
            try:
                return (await self.multiplexed.execute([self._evalsha(keys, args)]))[0]
            except InternalError as exc:
                if "NOSCRIPT" not in str(exc):
                    raise
            command = ("EVAL", WRITE, len(keys), *keys, *args)
            return (await self.multiplexed.execute([command]))[0]
        try:
            return (await packed.execute_async(self.client, [self._evalsha(keys, args)]))[0]
        except NoScriptError:
            await self.client.script_load(WRITE)
            return (await packed.execute_async(self.client, [self._evalsha(keys, args)]))[0]

    async def ingest(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
        offers: OfferCounting | None = None,
    ) -> IngestResult:
        """:meth:`EventWriter.ingest`, awaited. Requests of this writer (one per process) that
        share a customer run one after the other (:meth:`_claim`): the later one reads what the
        earlier wrote instead of planning from a stale read and conflicting in the script (a
        hot customer's events at 8 connections were re-read and re-planned several times each).
        Writers of other processes still serialize in Redis, as above."""
        await self.tombstones.get_async()
        request = self._request(events, version, plan, contact_horizon_s, offers)
        customers = list(request.events)
        mine = await self._claim(customers)
        try:
            return await self._rounds(request)
        finally:
            self._release(customers, mine)

    async def ingest_taken(
        self,
        customer: str,
        take: Callable[[], Sequence[Event]],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
        offers: OfferCounting | None = None,
    ) -> Request:
        """One customer's events, taken (``take``) only once this writer holds the customer:
        what arrives for them while an earlier write is in flight joins the same request
        (``feature_store.ingest_groups``). The request, done: its counts and applied events."""
        await self.tombstones.get_async()
        mine = await self._claim([customer])
        try:
            request = self._request(take(), version, plan, contact_horizon_s, offers)
            await self._rounds(request)
            return request
        finally:
            self._release([customer], mine)

    async def _rounds(self, request: Request) -> IngestResult:
        round_ = 1
        while request.pending:
            unregistered = self._unregistered(request)
            commands = request.read_commands(unregistered)
            with store_errors("read before event write"):
                replies = await self._execute(commands)
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
        counts = request.count_commands()
        if counts:
            with store_errors("offer counts write"):
                await self._execute(counts)
        return request.result()

    async def aclose(self) -> None:
        if self.multiplexed is not None:
            self.multiplexed.close()
        await self.client.aclose()
