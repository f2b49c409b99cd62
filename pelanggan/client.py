"""A typed Python client of the service for the email system and the apps (``httpx``).

:class:`Client` (blocking) and :class:`AsyncClient` (``asyncio``) have the same methods:
recommendations, a customer's offers, the offers batch, the NDJSON offers export (streamed: one
parsed line at a time, never the whole export in memory), the next best action, the profile, and
events. Answers are the parsed JSON, typed (:mod:`pelanggan.client_types`); an error answer
raises :class:`~pelanggan.client_types.ClientError` (4xx) or
:class:`~pelanggan.client_types.ServerError` (5xx) carrying the problem's type, title, status
and detail.

Events are sent **at least once and counted once**: every event without an ``event_id`` gets a
fresh one before the first attempt, so when an attempt fails after the service applied it (a
timeout, a dropped connection) the retry is answered as a duplicate, not applied twice. Only
events are retried, and only on 503 (model or store unavailable; its ``Retry-After`` is
honoured) and connection errors, a bounded number of times with exponential backoff and jitter
(``tenacity``). Reads are not retried: a page view that waits for a retry is worse than its
fallback.

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        client.send_events([{"customer_id": "17850", "event_type": "view", "item_id": "85123A"}])
        items = client.recommendations("17850", k=5)["items"]
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from pelanggan.client_types import (
    ClientError,
    CustomerOffers,
    EventCounts,
    NextBestAction,
    OffersBatch,
    ProblemError,
    Recommendations,
    ServerError,
    problem_from,
)

__all__ = ["AsyncClient", "Client", "ClientError", "ProblemError", "ServerError"]

API_KEY_HEADER = "X-API-Key"
EVENTS_PATH = "/v1/events"
EXPORT_PATH = "/v1/offers/export"


def with_event_ids(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``events``, each with an ``event_id`` (a new random one where absent)."""
    out = []
    for event in events:
        body = dict(event)
        if not body.get("event_id"):
            body["event_id"] = f"client-{uuid.uuid4().hex}"
        out.append(body)
    return out


def retryable(error: BaseException) -> bool:
    """503 and connection errors (timeouts, refused or dropped connections): worth a retry."""
    if isinstance(error, ServerError):
        return error.status == 503
    return isinstance(error, httpx.TransportError)


class RetryPolicy:
    """At most ``attempts`` tries; between them exponential backoff from ``backoff`` seconds,
    doubling, with up to ``backoff`` of jitter, at most ``max_backoff`` (a 503's
    ``Retry-After`` instead, when it says so, also at most ``max_backoff``)."""

    def __init__(self, attempts: int = 4, backoff: float = 0.2, max_backoff: float = 5.0) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts, self.max_backoff = attempts, max_backoff
        self._exponential = wait_exponential(multiplier=backoff, max=max_backoff) + wait_random(
            0, backoff
        )

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, ProblemError) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff)
        return min(float(self._exponential(state)), self.max_backoff)

    def options(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.attempts),
            "wait": self.wait,
            "retry": retry_if_exception(retryable),
            "reraise": True,
        }


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise problem_from(response)
    return response.json()


def _recommendation_params(
    k: int | None,
    context: str,
    item_id: str | None,
    exclude: Sequence[str],
    exclude_purchased: bool,
    category: str | None,
) -> httpx.QueryParams:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("context", context),
        ("exclude_purchased", "true" if exclude_purchased else "false"),
    ]
    if k is not None:
        params.append(("k", str(k)))
    if item_id is not None:
        params.append(("item_id", item_id))
    if category is not None:
        params.append(("category", category))
    params.extend(("exclude", item) for item in exclude)
    return httpx.QueryParams(params)


def _optional(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


def _events_body(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": events}


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


def _path(customer_id: str, tail: str = "") -> str:
    return f"/v1/customers/{quote(customer_id, safe='')}{tail}"


class Client:
    """The blocking client; one connection pool, closed by :meth:`close` or ``with``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)
        self.retry = retry or RetryPolicy()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def recommendations(
        self,
        customer_id: str,
        *,
        k: int | None = None,
        context: str = "home",
        item_id: str | None = None,
        exclude: Sequence[str] = (),
        exclude_purchased: bool = True,
        category: str | None = None,
    ) -> Recommendations:
        params = _recommendation_params(k, context, item_id, exclude, exclude_purchased, category)
        response = self.http.get(_path(customer_id, "/recommendations"), params=params)
        return cast(Recommendations, _answer(response))

    def offers(self, customer_id: str, *, channel: str | None = None, k: int = 3) -> CustomerOffers:
        params = _optional(channel=channel, k=k)
        return cast(
            CustomerOffers, _answer(self.http.get(_path(customer_id, "/offers"), params=params))
        )

    def offers_batch(
        self, customer_ids: Sequence[str], *, channel: str | None = None, k: int = 3
    ) -> OffersBatch:
        body = _optional(customer_ids=list(customer_ids), channel=channel, k=k)
        return cast(OffersBatch, _answer(self.http.post("/v1/offers/batch", json=body)))

    def export_offers(self, *, channel: str = "email", k: int = 3) -> Iterator[CustomerOffers]:
        """Every eligible customer's offers, one parsed NDJSON line at a time (admin scope)."""
        with self.http.stream("GET", EXPORT_PATH, params={"channel": channel, "k": k}) as response:
            if response.status_code >= 400:
                response.read()
                raise problem_from(response)
            for line in response.iter_lines():
                if line:
                    yield cast(CustomerOffers, orjson.loads(line))

    def next_best_action(self, customer_id: str, *, channel: str | None = None) -> NextBestAction:
        params = _optional(channel=channel)
        response = self.http.get(_path(customer_id, "/next-best-action"), params=params)
        return cast(NextBestAction, _answer(response))

    def customer(self, customer_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], _answer(self.http.get(_path(customer_id))))

    def model(self) -> dict[str, Any]:
        return cast(dict[str, Any], _answer(self.http.get("/v1/model")))

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventCounts:
        """Record events (at most the service's batch size, 1,000 by default), retried on 503
        and connection errors with the same event ids."""
        body = _events_body(with_event_ids(events))
        for attempt in Retrying(**self.retry.options()):
            with attempt:
                return cast(EventCounts, _answer(self.http.post(EVENTS_PATH, json=body)))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def send_event(self, event: Mapping[str, Any]) -> EventCounts:
        return self.send_events([event])


class AsyncClient:
    """The ``asyncio`` client; one connection pool, closed by :meth:`aclose` or ``async with``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)
        self.retry = retry or RetryPolicy()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def recommendations(
        self,
        customer_id: str,
        *,
        k: int | None = None,
        context: str = "home",
        item_id: str | None = None,
        exclude: Sequence[str] = (),
        exclude_purchased: bool = True,
        category: str | None = None,
    ) -> Recommendations:
        params = _recommendation_params(k, context, item_id, exclude, exclude_purchased, category)
        response = await self.http.get(_path(customer_id, "/recommendations"), params=params)
        return cast(Recommendations, _answer(response))

    async def offers(
        self, customer_id: str, *, channel: str | None = None, k: int = 3
    ) -> CustomerOffers:
        params = _optional(channel=channel, k=k)
        response = await self.http.get(_path(customer_id, "/offers"), params=params)
        return cast(CustomerOffers, _answer(response))

    async def offers_batch(
        self, customer_ids: Sequence[str], *, channel: str | None = None, k: int = 3
    ) -> OffersBatch:
        body = _optional(customer_ids=list(customer_ids), channel=channel, k=k)
        return cast(OffersBatch, _answer(await self.http.post("/v1/offers/batch", json=body)))

    async def export_offers(
        self, *, channel: str = "email", k: int = 3
    ) -> AsyncIterator[CustomerOffers]:
        """Every eligible customer's offers, one parsed NDJSON line at a time (admin scope)."""
        params = httpx.QueryParams({"channel": channel, "k": k})
        async with self.http.stream("GET", EXPORT_PATH, params=params) as response:
            if response.status_code >= 400:
                await response.aread()
                raise problem_from(response)
            async for line in response.aiter_lines():
                if line:
                    yield cast(CustomerOffers, orjson.loads(line))

    async def next_best_action(
        self, customer_id: str, *, channel: str | None = None
    ) -> NextBestAction:
        params = _optional(channel=channel)
        response = await self.http.get(_path(customer_id, "/next-best-action"), params=params)
        return cast(NextBestAction, _answer(response))

    async def customer(self, customer_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], _answer(await self.http.get(_path(customer_id))))

    async def model(self) -> dict[str, Any]:
        return cast(dict[str, Any], _answer(await self.http.get("/v1/model")))

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventCounts:
        """As :meth:`Client.send_events`."""
        body = _events_body(with_event_ids(events))
        async for attempt in AsyncRetrying(**self.retry.options()):
            with attempt:
                return cast(EventCounts, _answer(await self.http.post(EVENTS_PATH, json=body)))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def send_event(self, event: Mapping[str, Any]) -> EventCounts:
        return await self.send_events([event])
