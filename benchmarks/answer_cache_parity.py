"""The answer cache's answers against ranking again, for every customer of a trained root.

    python -m benchmarks.answer_cache_parity --artifacts DIR [--redis-url URL]

Builds the app over the root (embedded Redis unless a URL is given), and for each customer, with
one of a few page-view queries in turn, asks the page view with the cache off, then on (a miss:
ranked and stored), then on again (a hit), and compares the three response bodies byte for byte.
Prints how many were identical and the cache's counts (every second view must be a hit).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `recsys serve` runs: before numpy

import argparse
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.page_view_profile import app_started, call, count, forget_answers, profile_redis
from recsys.bundle import latest_version_dir, read_bundle
from recsys.config import Settings
from serving.app import create_app

QUERIES = ("k=10", "k=10&exclude_purchased=false", "k=20&context=email", "k=5&context=cart")


async def compare(app: Any, customers: list[str], redis_url: str) -> tuple[int, int]:
    """(identical, different) over ``customers``: off, miss and hit bodies compared (their
    stored answers deleted first)."""
    forget_answers(app, customers, redis_url)
    cache = app.state.answer_cache
    ttl_s = cache.ttl_s or 3600
    identical = 0
    for i, customer in enumerate(customers):
        path, query = f"/v1/customers/{customer}/recommendations", QUERIES[i % len(QUERIES)]
        cache.ttl_s = 0
        _, ranked = await call(app, path, query)
        cache.ttl_s = ttl_s
        _, first = await call(app, path, query)
        _, second = await call(app, path, query)
        identical += ranked == first == second
    return identical, len(customers) - identical


async def run(artifacts: Path, redis_url: str) -> None:
    customers = [str(c) for c in read_bundle(latest_version_dir(artifacts)).customer_ids]
    app = create_app(Settings(artifacts=artifacts, redis_url=redis_url))
    async with app_started(app):
        identical, different = await compare(app, customers, redis_url)
        counts = {r: count(app, r) for r in ("hit", "miss", "stored", "refused", "failed")}
    print(f"{identical:,} identical, {different:,} different, of {len(customers):,} customers")
    print("answer cache: " + ", ".join(f"{r} {n:,.0f}" for r, n in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--redis-url", default=None, help="a Redis to use (default: embedded)")
    args = parser.parse_args()
    with profile_redis(args.artifacts, args.redis_url) as url:
        uvloop.run(run(args.artifacts, url))


if __name__ == "__main__":
    main()
