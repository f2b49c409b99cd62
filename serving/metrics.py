"""Prometheus metrics, one registry per app (so tests can build many apps side by side).

Labels are bounded: the route *template* (``/v1/customers/{customer_id}``; never a raw path, so no
customer id reaches the metrics), the method and the status code; event outcomes; offer types
(the catalogue's, a handful); fallback reasons.

Besides the service's own series the registry holds prometheus_client's process collector (CPU,
memory, open files of this process) and platform collector (the Python version).

**Several workers** (``recsys serve --workers N``, see :mod:`serving.server`): each worker is a
process of its own, and a scrape reaches one of them. With ``PROMETHEUS_MULTIPROC_DIR`` set (the
server sets it for N > 1) prometheus_client keeps every worker's values in memory-mapped files
there, and :meth:`Metrics.render` answers for all of them: counters and histograms summed over
the workers, the served-version gauge per live worker's maximum, and the process series of
every live worker labelled with its ``pid``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import glob
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: A page view's Redis read: a loopback round trip is ~0.1 ms, the serving timeout ~tens of ms.
REDIS_BUCKETS = (
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
)  # fmt: skip
UNMATCHED_ROUTE = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EVENT_OUTCOMES = ("accepted", "duplicate", "ignored", "rejected")
ANSWER_CACHE_RESULTS = ("hit", "miss", "stored", "refused", "failed")
_PID_OF_FILE = re.compile(r"_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this process, or None (one process: plain registry)."""
    return os.environ.get(MULTIPROC_ENV) or None


@contextlib.contextmanager
def workers_multiprocess_dir() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the worker processes of one server run: the operator's
    (emptied of an earlier run's files, as prometheus_client asks) or a temporary one, removed
    afterwards. Set before the workers start, since each reads it when it imports the client."""
    given = multiprocess_dir()
    if given is not None:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="recsys-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield path
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir()
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
        self.events = Counter(
            "recsys_events",
            "Events posted, by outcome: accepted (stored and applied), duplicate (event_id seen "
            "before), ignored (erased customer), rejected (in a batch refused as invalid: 422)",
            ["outcome"],
            registry=self.registry,
        )
        self.offers = Counter(
            "recsys_offers_served",
            "Offers answered, by endpoint and offer type (next_best_action: the chosen action)",
            ["endpoint", "type"],
            registry=self.registry,
        )
        self.redis_read = Histogram(
            "recsys_redis_page_view_read_duration_seconds",
            "Time of a page view's one Redis read (the customer's records, catalogue revision "
            "and active version), failures included",
            buckets=REDIS_BUCKETS,
            registry=self.registry,
        )
        self.answer_cache = Counter(
            "recsys_answer_cache",
            "Page views' stored answers (serving.answer_cache): hit (answered from it), miss "
            "(computed), stored, refused (written back too late: the customer changed, or too "
            "large), failed (the write-back did not reach Redis)",
            ["result"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "The model version this process serves (value 1 on the active version)",
            ["version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "recsys_model_reloads", "Model reloads, by outcome", ["outcome"], registry=self.registry
        )
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        #: The Redis read's ``observe`` (bound once: the page view calls it directly).
        self.observe_redis_read = self.redis_read.observe
        self._served_version: str | None = None

        # Labelled children by label values: ``labels()`` validates and locks on every call,
        # a dict lookup does not (the label sets are bounded, so these dicts are too).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._recommendation_children: dict[tuple[str, str], Any] = {}
        self._fallback_children: dict[str, Any] = {}
        self._offer_children: dict[tuple[str, str], Any] = {}
        self._event_children = {outcome: self.events.labels(outcome) for outcome in EVENT_OUTCOMES}
        self._answer_children = {r: self.answer_cache.labels(r) for r in ANSWER_CACHE_RESULTS}

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

    def count_answer(self, result: str) -> None:
        """One page view's answer-cache outcome (of :data:`ANSWER_CACHE_RESULTS`)."""
        self._answer_children[result].inc()

    def count_fallback(self, reason: str) -> None:
        child = self._fallback_children.get(reason)
        if child is None:
            child = self._fallback_children.setdefault(reason, self.fallbacks.labels(reason))
        child.inc()

    def count_events(self, counts: Mapping[str, int]) -> None:
        """``counts``: outcome (of :data:`EVENT_OUTCOMES`) -> how many events."""
        for outcome, n in counts.items():
            if n:
                self._event_children[outcome].inc(n)

    def count_offers(self, endpoint: str, offers: Iterable[Mapping[str, Any]]) -> None:
        """One count per answered offer (an offer body with its ``type``); one ``inc`` per
        type (a batch answers thousands of offers)."""
        for kind, n in collections.Counter(str(o["type"]) for o in offers).items():
            key = (endpoint, kind)
            child = self._offer_children.get(key)
            if child is None:
                child = self._offer_children.setdefault(key, self.offers.labels(*key))
            child.inc(n)

    def set_model_version(self, version: str | None) -> None:
        previous, self._served_version = self._served_version, version
        if previous is not None and previous != version:
            self.model_info.labels(previous).set(0)  # in multiprocess files too (clear is not)
            self.model_info.remove(previous)
        if version is not None:
            self.model_info.labels(version).set(1)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(WorkerProcesses(self.multiprocess_dir))
        registry.register(PLATFORM_COLLECTOR)
        return generate_latest(registry)

    def close(self) -> None:
        """At process exit: a multiprocess worker's live gauges leave the aggregate."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)


def worker_pids(path: str) -> list[int]:
    """The live processes that left metric files under ``path``."""
    pids = set()
    for name in glob.glob(os.path.join(path, "*.db")):
        found = _PID_OF_FILE.search(name)
        if found is not None:
            pids.add(int(found.group(1)))
    return sorted(pid for pid in pids if os.path.exists(f"/proc/{pid}"))


class WorkerProcesses(Collector):
    """prometheus_client's process collector for every live worker, a ``pid`` label each."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in worker_pids(self.path):
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                into.samples.extend(
                    sample._replace(labels={**sample.labels, "pid": str(pid)})
                    for sample in family.samples
                )
        yield from merged.values()
