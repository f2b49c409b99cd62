"""In-process cost of one page view, without sockets: where the time of a request goes.

    python -m benchmarks.page_view_profile --artifacts DIR [--requests N] [--profile]

Builds the app over a trained root (embedded Redis unless ``RECSYS_REDIS_URL`` is set), drives
the ASGI app directly (a minimal ASGI call: no HTTP parsing, no network) for ``N`` page views of
rotating real customers on uvloop (the served event loop), and prints the CPU microseconds per
request for the whole app, then for its parts each alone (the store read, the ranking, the
response body); what they leave is the framework's, middleware's, auth's. ``--profile`` runs
the same loop under pyinstrument and prints its tree (pyinstrument, in the bench extra). The parts
alone run with warm caches; in a request they follow each other and cost more.

``--evaluator native|onnx|both`` (default both, one after the other in this process): how the
learned rankers run (the setting ``serving.ranker_evaluator``); the ranking part also prints the
rankers' own share (their ``predict`` calls).

The answer cache (``serving.answer_cache``): the whole-app figure is taken with it off
(``answer_cache_ttl_s`` 0 on the same app), then with it on over ``N`` customers whose stored
answers are deleted first: their first views (misses: ranked, and the write-back sent), then the
same views again (hits: the stored answers), and a third time (hits whose items the process
rendered before: ``AnswerCache.hit_rendered``); the hits counted are printed beside.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `recsys serve` runs: before numpy

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import redis
import uvloop

from feature_store import keys
from feature_store.embedded import EmbeddedRedis
from recsys.bundle import latest_version_dir, read_bundle
from recsys.config import Settings, get_settings
from recsys.ranking.scoring import RankingModel
from serving.app import create_app
from serving.recommend import RecommendationQuery, recommend, serialize_items
from serving.routes.common import json_response

Receive = Callable[[], Awaitable[dict[str, Any]]]


async def call(app: Any, path: str, query: str = "", *, body: Any = None) -> tuple[int, bytes]:
    """One request through the ASGI app: a GET, or with ``body`` a JSON POST; (status, body)."""
    raw = b"" if body is None else orjson.dumps(body)
    headers = [(b"host", b"127.0.0.1")]
    if body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET" if body is None else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
    }
    sent: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return sent["status"], sent["body"]


@contextlib.asynccontextmanager
async def app_started(app: Any) -> AsyncIterator[None]:
    """The ASGI app with its lifespan run: started on entry, shut down on exit."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {message}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


@contextlib.contextmanager
def profile_redis(artifacts: Path, redis_url: str | None, *, persist: bool = True) -> Iterator[str]:
    """``redis_url``, or an embedded server's under ``artifacts/redis-profile`` while open."""
    if redis_url:
        yield redis_url
        return
    with EmbeddedRedis(artifacts / "redis-profile", persist=persist) as server:
        yield server.url


async def measure(app: Any, customers: list[str], n: int) -> float:
    """CPU microseconds per page view over ``n`` requests (after a warm-up)."""
    for customer in customers[:200]:
        status, _ = await call(app, f"/v1/customers/{customer}/recommendations", "k=10")
        assert status == 200, status
    started = time.process_time()
    for i in range(n):
        customer = customers[i % len(customers)]
        await call(app, f"/v1/customers/{customer}/recommendations", "k=10")
    return (time.process_time() - started) / n * 1e6


EVALUATORS = {"native": ("native",), "onnx": ("onnx",), "both": ("onnx", "native")}


def use_evaluator(evaluator: str) -> None:
    """Models loaded from now on run their rankers with ``evaluator`` (the setting)."""
    os.environ["RECSYS_SERVING__RANKER_EVALUATOR"] = evaluator
    get_settings.cache_clear()


class _Timed:
    def __init__(self, inner: Any, spent: list[float]) -> None:
        self.inner, self.spent = inner, spent

    def predict(self, features: Any) -> Any:
        started = time.process_time()
        scores = self.inner.predict(features)
        self.spent[0] += time.process_time() - started
        self.spent[1] += 1
        return scores


@contextlib.contextmanager
def timed_rankers(ranking: RankingModel) -> Iterator[list[float]]:
    """``[CPU seconds, calls]`` of the learned rankers' ``predict`` while inside."""
    spent = [0.0, 0.0]
    original = dict(ranking.rankers)
    rankers: Any = ranking.rankers  # the model's own dict: swapped back on the way out
    rankers.update({task: _Timed(ranker, spent) for task, ranker in original.items()})
    try:
        yield spent
    finally:
        rankers.update(original)


def count(app: Any, result: str) -> float:
    """The app's ``recsys_answer_cache_total{result=...}`` so far."""
    registry = app.state.metrics.registry
    return registry.get_sample_value("recsys_answer_cache_total", {"result": result}) or 0.0


async def views(app: Any, customers: list[str]) -> float:
    """CPU microseconds per page view (``k=10``) of one view of each of ``customers``."""
    started = time.process_time()
    for customer in customers:
        status, _ = await call(app, f"/v1/customers/{customer}/recommendations", "k=10")
        assert status == 200, status
    return (time.process_time() - started) / len(customers) * 1e6


def forget_answers(app: Any, customers: list[str], redis_url: str) -> None:
    """Delete the stored answers of ``customers`` (their next views miss)."""
    client = redis.Redis.from_url(redis_url)
    prefix = app.state.answer_cache.prefix
    for start in range(0, len(customers), 1000):
        chunk = customers[start : start + 1000]
        client.delete(*(keys.customer_answer(prefix, c) for c in chunk))
    client.close()


async def measure_cache(app: Any, customers: list[str], redis_url: str) -> dict[str, float]:
    """CPU microseconds per page view with the answer cache on: ``customers``' first views
    (their stored answers deleted first: misses) and their second views (hits)."""
    forget_answers(app, customers, redis_url)
    hits_before = count(app, "hit")
    miss = await views(app, customers)
    stored = count(app, "stored")
    hit = await views(app, customers)
    again = await views(app, customers)  # hits whose items this process rendered before
    return {
        "miss": miss,
        "hit": hit,
        "again": again,
        "hits": count(app, "hit") - hits_before,
        "stored": stored,
    }


async def measure_parts(app: Any, customers: list[str], n: int) -> dict[str, float]:
    """CPU microseconds per page view of its parts, each alone over ``n`` customers: the
    store read (:meth:`ServingState.read_customer_async`, the page view's read plan), the
    ranking (:func:`~serving.recommend.recommend`) and the body (items and JSON)."""
    serving = app.state.serving
    query = RecommendationQuery()
    started = time.process_time()
    reads = [await serving.read_customer_async(customers[i % len(customers)]) for i in range(n)]
    read = time.process_time() - started
    with timed_rankers(reads[0].snapshot.model.ranking) as spent:
        started = time.process_time()
        ranked = [recommend(r.snapshot, r.customer, query) for r in reads]
        ranking = time.process_time() - started
    started = time.process_time()
    for r, (strategy, items) in zip(reads, ranked, strict=True):
        body = serialize_items(r.snapshot.catalog, r.snapshot.model.item_ids, items)
        json_response({"items": body, "strategy": strategy, "model_version": r.snapshot.version})
    serialization = time.process_time() - started
    seconds = {
        "store read": read,
        "ranking": ranking,
        "  of which learned ranker": spent[0],
        "response body": serialization,
    }
    return {name: value / n * 1e6 for name, value in seconds.items()}


async def run(artifacts: Path, redis_url: str, n: int, profile: bool, evaluator: str) -> None:
    for each in EVALUATORS[evaluator]:
        use_evaluator(each)
        await run_one(artifacts, redis_url, n, profile)


async def run_one(artifacts: Path, redis_url: str, n: int, profile: bool) -> None:
    bundle = read_bundle(latest_version_dir(artifacts))
    customers = [str(c) for c in bundle.customer_ids]
    random.Random(7).shuffle(customers)
    settings = Settings(artifacts=artifacts, redis_url=redis_url)
    app = create_app(settings)
    async with app_started(app):
        cache = app.state.answer_cache
        ttl_s, cache.ttl_s = cache.ttl_s, 0  # off: every view ranked
        whole = await measure(app, customers, n)
        parts = await measure_parts(app, customers, n)
        served = app.state.serving.snapshot.model.ranker_evaluators
        print(f"rankers: {served or 'none (the blend ranks)'}")
        cache.ttl_s = ttl_s or 3600
        cached = await measure_cache(app, customers[:n], redis_url)
        print(f"page view, whole app in process: {whole:8.0f} µs CPU per request ({n} requests)")
        for name, value in parts.items():
            print(f"  {name + ', alone:':<30} {value:8.0f} µs CPU per request")
        views_timed = min(n, len(customers))
        print(
            f"answer cache on, {views_timed} customers:\n"
            f"  {'first views (misses):':<30} {cached['miss']:8.0f} µs CPU per request "
            f"({cached['stored']:.0f} answers stored)\n"
            f"  {'repeat views (hits):':<30} {cached['hit']:8.0f} µs CPU per request "
            f"({cached['hits']:.0f} hits over both)\n"
            f"  {'third views (hits, rendered):':<30} {cached['again']:8.0f} µs CPU per request"
        )
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            with profiler:
                await measure(app, customers, n)
            print(profiler.output_text(unicode=True, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--requests", type=int, default=3000, help="page views to time")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile")
    parser.add_argument("--redis-url", default=None, help="a Redis to use (default: embedded)")
    parser.add_argument("--evaluator", choices=sorted(EVALUATORS), default="both",
                        help="how the rankers run (default: onnx, then native)")  # fmt: skip
    args = parser.parse_args()
    with profile_redis(args.artifacts, args.redis_url) as url:
        uvloop.run(run(args.artifacts, url, args.requests, args.profile, args.evaluator))


if __name__ == "__main__":
    main()
