"""In-process CPU cost of ``POST /v1/events`` and ``POST /v1/offers/batch``, without sockets.

    python -m benchmarks.ingest_profile --artifacts DIR [--requests N] [--profile]

Builds the app over a trained root (embedded Redis unless ``--redis-url``), drives the ASGI app
directly (``benchmarks.page_view_profile``'s minimal ASGI call, here with a JSON body) and
prints the CPU time of this process per event -- for batches of 100 real June-August purchase
lines of the shared data (consecutive lines: a few customers), for one event at a time, and for
batches of 100 lines drawn at random (about 90 customers each) -- and per customer of
1,000-id offers batches. Redis's own CPU is not in these figures (it is another process).
``--profile`` runs each loop again under ``cProfile`` and prints the functions with the most
own time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `recsys serve` runs: before numpy

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.events_bench import DATA_FILE
from benchmarks.page_view_profile import app_started, call, profile_redis
from recsys.bundle import latest_version_dir, read_bundle
from recsys.config import Settings
from serving.app import create_app


def event_bodies(data: Path, limit: int) -> list[dict[str, Any]]:
    """Real purchase lines after 2011-06-01 as event bodies (``benchmarks.events_bench``'s), in
    time order, unique ids."""
    from benchmarks.events_bench import _event_bodies
    from recsys.io.loaders import load_interactions

    return _event_bodies(load_interactions(data).interactions)[:limit]


Step = Callable[[int], Awaitable[None]]


async def cpu_per(step: Step, n: int, units: int, profile: bool) -> float:
    """CPU microseconds of this process per unit over ``n`` steps of ``units`` units each."""
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not wall
    started = time.process_time()
    if profiler:
        profiler.enable()
    for i in range(n):
        await step(i)
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
    return (time.process_time() - started) / (n * units) * 1e6


def command_counts(url: str) -> dict[str, int]:
    """Redis's calls per command so far (``INFO commandstats``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def commands_per(url: str, before: dict[str, int], requests: int) -> str:
    after = command_counts(url)
    used = {k: (v - before.get(k, 0)) / requests for k, v in after.items() if v > before.get(k, 0)}
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items()) if k != "info")


async def run(artifacts: Path, data: Path, redis_url: str, n: int, profile: bool) -> None:
    bundle = read_bundle(latest_version_dir(artifacts))
    customers = [str(c) for c in bundle.customer_ids]
    random.Random(7).shuffle(customers)
    events = event_bodies(data, n * 100 * 2 + n * 2 + 2_000 + (n // 4 + 6) * 100)
    prefix = f"prof{uuid.uuid4().hex[:6]}"
    settings = Settings(artifacts=artifacts, redis_url=redis_url, redis_prefix=prefix)
    app = create_app(settings)
    cursor = {"n": 0}

    def take(count: int) -> list[dict[str, Any]]:
        start = cursor["n"]
        cursor["n"] += count
        return events[start : start + count]

    async def batch(_: int) -> None:
        status, body = await call(app, "/v1/events", body={"events": take(100)})
        assert status == 202, (status, body)

    shuffled = list(events[n * 100 * 2 + n * 2 + 2_000 :])
    random.Random(3).shuffle(shuffled)
    drawn = {"n": 0}

    async def random_batch(_: int) -> None:  # 100 lines drawn at random: ~90 customers
        start = drawn["n"]
        drawn["n"] += 100
        status, body = await call(app, "/v1/events", body={"events": shuffled[start : start + 100]})
        assert status == 202, (status, body)

    async def single(_: int) -> None:
        status, body = await call(app, "/v1/events", body=take(1)[0])
        assert status == 202, (status, body)

    async def offers(i: int) -> None:
        start = (i * 1000) % max(len(customers) - 1000, 1)
        body = {"customer_ids": customers[start : start + 1000], "channel": "email"}
        status, reply = await call(app, "/v1/offers/batch", body=body)
        assert status == 200, (status, reply[:300])

    async with app_started(app):
        for _ in range(5):  # warm-up
            await batch(0)
            await single(0)
        await offers(0)
        steps = (("batch of 100", batch), ("one event", single), ("offers", offers))
        for name, step in steps:
            before = command_counts(redis_url)
            for i in range(5):
                await step(i)
            print(f"Redis commands per request, {name}: {commands_per(redis_url, before, 5)}")
        rounds = 2 if profile else 1
        for r in range(rounds):
            p = profile and r == 1
            per_batched = await cpu_per(batch, n, 100, p)
            per_single = await cpu_per(single, n, 1, p)
            per_random = await cpu_per(random_batch, max(n // 4, 3), 100, p)
            per_offer = await cpu_per(offers, max(n // 10, 3), 1000, p)
        print(f"events in batches of 100: {per_batched:8.1f} µs CPU per event ({n} requests)")
        print(f"events one at a time:     {per_single:8.1f} µs CPU per event ({n} requests)")
        print(f"random batches of 100:    {per_random:8.1f} µs CPU per event (~90 customers each)")
        print(f"offers batch of 1,000:    {per_offer:8.1f} µs CPU per customer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--requests", type=int, default=100, help="event requests per figure")
    parser.add_argument("--events", type=Path, default=DATA_FILE, help="the purchases file")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--redis-url", default=None, help="a Redis to use (default: embedded)")
    args = parser.parse_args()
    with profile_redis(args.artifacts, args.redis_url, persist=False) as url:
        asyncio.run(run(args.artifacts, args.events, url, args.requests, args.profile))


if __name__ == "__main__":
    main()
