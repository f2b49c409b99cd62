"""What :mod:`pelanggan.client` returns and raises: the answers' shapes (``TypedDict``: the JSON
as parsed, typed for the caller's checker) and the problem+json exceptions.

Every error answer of the service is ``application/problem+json`` (RFC 9457). The client turns
it into one exception per status family, each carrying the problem's ``type``, ``title``,
``status`` and ``detail`` (and the whole ``body``): :class:`ClientError` for 4xx (the request is
wrong: do not send it again as it is), :class:`ServerError` for 5xx (the service could not
answer now).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

import httpx

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error answer of the service (any status of 400 or more)."""

    def __init__(
        self, status: int, body: Mapping[str, Any], retry_after: float | None = None
    ) -> None:
        self.status = status
        self.type = str(body.get("type", "about:blank"))
        self.title = str(body.get("title", f"HTTP {status}"))
        self.detail: str | None = body.get("detail")
        self.request_id: str | None = body.get("request_id")
        self.body = dict(body)
        self.retry_after = retry_after  # seconds, from a Retry-After header
        super().__init__(f"{status} {self.title}: {self.detail or ''}".rstrip(": "))


class ClientError(ProblemError):
    """4xx: the request is wrong (bad input, no key, no scope, not found)."""


class ServerError(ProblemError):
    """5xx: the service cannot answer now (503: model or store unavailable)."""


def problem_from(response: httpx.Response) -> ProblemError:
    """The exception of an error ``response`` (its problem+json, or a plain-text stand-in)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase, "detail": response.text[:500] or None}
    retry_after: float | None = None
    header = response.headers.get("Retry-After")
    if header is not None and header.strip().isdigit():
        retry_after = float(header)
    family = ServerError if response.status_code >= 500 else ClientError
    return family(response.status_code, body, retry_after)


Strategy = Literal["personalized", "cold_start", "fallback"]


class RecommendedItem(TypedDict):
    item_id: str
    score: float
    reason: str
    title: NotRequired[str | None]
    category: NotRequired[str | None]
    price: NotRequired[float | None]


class Recommendations(TypedDict):
    customer_id: str
    context: str
    items: list[RecommendedItem]
    strategy: Strategy
    model_version: str | None


class Offer(TypedDict):
    offer_id: str
    type: str
    title: str
    discount_pct: float | None
    items: list[str]
    reason: str
    score: float
    expires_at: str | None


class CustomerOffers(TypedDict):
    customer_id: str
    known: bool
    offers: list[Offer]
    channel: NotRequired[str | None]
    model_version: NotRequired[str]


class OffersBatch(TypedDict):
    channel: str | None
    model_version: str
    results: list[CustomerOffers]


class Action(TypedDict):
    action_id: str
    type: str
    title: str
    reason: str
    expected_value: float
    items: list[str]


class NextBestAction(TypedDict):
    customer_id: str
    action: Action
    alternatives: list[Action]
    journey_stage: str
    churn_risk: float | None
    channel: str | None
    model_version: str


class EventCounts(TypedDict):
    accepted: int
    duplicates: int
    ignored: int
