"""Single-event requests of one customer, grouped while a write for that customer is in flight.

The apps send events one at a time. Requests of one writer that share a customer take turns
(``feature_store.ingest.AsyncEventWriter``), so concurrent single events of an active customer
queue up, each paying a read, a plan (online features, fold-in, churn rescore) and a script of
its own. :class:`IngestGroups` turns that queue into one request: a single-event request whose
customer is being written joins the customer's open group; the group is taken as soon as the
writer holds the customer (nothing awaited in between, so no event overtakes it) and written as
ONE request -- one read, one plan, one script -- in arrival order. (Every single event goes
through a group; with no write in flight for its customer, the group is taken at once.)

Each request is answered from the group's outcome for its own event, only after the group's
script returned (durable before acknowledged, as for any request): accepted when the script
applied it, a duplicate when its ``event_id`` was applied before or by an earlier request of
the group, ignored when the customer is erased. A store error fails every request of the group
(none of them was acknowledged). Validation is per request and happens before a request joins
(``serving.routes.events``): a rejected event gets its own 4xx and never enters a group, so it
cannot fail the others. The group's write runs in a task of its own: a request that goes away
does not cancel the others' write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from feature_store.ingest import AsyncEventWriter
from feature_store.ingest_request import IngestResult, OfferCounting, Plan, Request
from recsys.events import Event


@dataclass
class _Group:
    """The requests of one customer waiting for the write in flight; the first one's model
    version, plan and offer counting serve the group (the same model: groups are per version)."""

    version: str | None
    plan: Plan
    horizon_s: float | None
    offers: OfferCounting | None
    events: list[Event] = field(default_factory=list)
    answers: list[asyncio.Future[IngestResult]] = field(default_factory=list)


def answer(request: Request, event: Event) -> IngestResult:
    """One grouped event's share of its group's outcome."""
    if request.ignored:  # one customer: erased, every event of the group ignored
        return IngestResult(0, 0, 1)
    if id(event) in request.applied:
        return IngestResult(1, 0)
    return IngestResult(0, 1)


class IngestGroups:
    """The route's entry to an :class:`AsyncEventWriter`: batches go straight to it, single
    events of a customer being written are grouped (see the module docstring)."""

    def __init__(self, writer: AsyncEventWriter) -> None:
        self.writer = writer
        self._open: dict[tuple[str, str | None], _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def ingest(
        self,
        events: Sequence[Event],
        version: str | None,
        plan: Plan,
        *,
        contact_horizon_s: float | None = None,
        offers: OfferCounting | None = None,
    ) -> IngestResult:
        """:meth:`AsyncEventWriter.ingest`; a single event joins its customer's open group
        (or opens one): taken once the writer holds the customer."""
        if len(events) != 1:
            return await self.writer.ingest(
                events, version, plan, contact_horizon_s=contact_horizon_s, offers=offers
            )
        event = events[0]
        key = (event.customer_id, version)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Group(version, plan, contact_horizon_s, offers)
            task = asyncio.get_running_loop().create_task(self._write(key, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        mine: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        group.events.append(event)
        group.answers.append(mine)
        return await asyncio.shield(mine)

    async def _write(self, key: tuple[str, str | None], group: _Group) -> None:
        def take() -> Sequence[Event]:
            if self._open.get(key) is group:
                del self._open[key]
            return list(group.events)

        try:
            request = await self.writer.ingest_taken(
                key[0],
                take,
                group.version,
                group.plan,
                contact_horizon_s=group.horizon_s,
                offers=group.offers,
            )
        except BaseException as exc:  # every request of the group hears of it
            if self._open.get(key) is group:
                del self._open[key]
            for future in group.answers:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for event, future in zip(group.events, group.answers, strict=True):
            if not future.done():
                future.set_result(answer(request, event))
