"""Prometheus metrics, one registry per app (so tests can build many apps side by side).

Labels are bounded: the route *template* (``/v1/customers/{customer_id}``; never a raw path, so no
customer id reaches the metrics), the method and the status code.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
UNMATCHED_ROUTE = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "recsys_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recommendations = Counter(
            "recsys_recommendations",
            "Recommendation answers, by strategy (personalized, cold_start, fallback)",
            ["endpoint", "strategy"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks",
            "Answers degraded to a fallback, by reason (store_unavailable, store_error, no model)",
            ["reason"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "The model version this process serves (value 1 on the active version)",
            ["version"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "recsys_model_reloads", "Model reloads, by outcome", ["outcome"], registry=self.registry
        )

        # Labelled children by label values: ``labels()`` validates and locks on every call,
        # a dict lookup does not (the label sets are bounded, so these dicts are too).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._recommendation_children: dict[tuple[str, str], Any] = {}
        self._fallback_children: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_recommendation(self, endpoint: str, strategy: str) -> None:
        child = self._recommendation_children.get((endpoint, strategy))
        if child is None:
            child = self._recommendation_children.setdefault(
                (endpoint, strategy), self.recommendations.labels(endpoint, strategy)
            )
        child.inc()

    def count_fallback(self, reason: str) -> None:
        child = self._fallback_children.get(reason)
        if child is None:
            child = self._fallback_children.setdefault(reason, self.fallbacks.labels(reason))
        child.inc()

    def set_model_version(self, version: str | None) -> None:
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
