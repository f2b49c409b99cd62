"""In-process cost of ``POST /v1/offers/batch``: CPU microseconds a customer, whole and by part.

    python -m benchmarks.offers_profile --artifacts DIR [--batches 4] [--profile]

Builds the app over a trained root (an embedded Redis in a temporary folder unless
``--redis-url``), drives the ASGI app directly (no sockets) with batches of 1,000 real customer
ids, and prints the CPU microseconds a customer of the whole request, then of its parts each
alone: the store read, the recommended items of those who need them
(``recommended_items_many``: the block-batched ranking), the rest of the decisions
(``offers_for_many`` less the items) and the response body. It also prints how many customers
the block ranking handed back to the single path (``BatchCounts``: ties at a cut, cold
start). ``--profile`` prints the top of a cProfile of the parts (the route itself runs in a
worker thread, out of a profiler's sight; ``py-spy record`` on a served worker sees it too).
``--evaluator native|onnx|both`` (default both, one after the other): how the learned rankers
run (``serving.ranker_evaluator``); the item ranking also prints the rankers' own share.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from benchmarks.page_view_profile import (  # noqa: E402
    EVALUATORS,
    app_started,
    call,
    profile_redis,
    timed_rankers,
    use_evaluator,
)
from recsys.bundle import latest_version_dir, read_bundle  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.ranking.batch import BatchCounts, rank_items_batch  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.offers import items_query, offers_for_many, scoring_inputs  # noqa: E402
from serving.routes.common import json_response  # noqa: E402

BATCH = 1000


async def whole(app: Any, batches: list[list[str]]) -> float:
    """CPU microseconds a customer of the whole request (after one warm-up batch)."""
    status, _ = await call(app, "/v1/offers/batch", body={"customer_ids": batches[0]})
    assert status == 200, status
    started = time.process_time()
    for ids in batches:
        status, _ = await call(app, "/v1/offers/batch", body={"customer_ids": ids})
    return (time.process_time() - started) / sum(map(len, batches)) * 1e6


def parts(app: Any, batches: list[list[str]]) -> tuple[dict[str, float], BatchCounts]:
    """CPU microseconds a customer of the request's parts, each alone."""
    serving = app.state.serving
    took = {"store read": 0.0, "item ranking": 0.0, "  of which learned ranker": 0.0,
            "offers (all)": 0.0, "response body": 0.0}  # fmt: skip
    counts = BatchCounts()
    for ids in batches:
        started = time.process_time()
        snapshot, states = serving.read_customers(ids, store=app.state.bulk_reads)
        took["store read"] += time.process_time() - started
        slots = snapshot.model.customer_models.item_slots
        model = snapshot.model.ranking
        with timed_rankers(model) as spent:
            started = time.process_time()
            batch, extra = scoring_inputs(snapshot, states, items_query("email", slots))
            rank_items_batch(model, batch, slots, snapshot.catalog.blocked, extra, "all", counts)
            took["item ranking"] += time.process_time() - started
        took["  of which learned ranker"] += spent[0]
        started = time.process_time()
        chosen = offers_for_many(snapshot, states, now=_now(), channel="email", k=3)
        took["offers (all)"] += time.process_time() - started
        started = time.process_time()
        body = {"results": [c.to_dict() for c in chosen], "model_version": snapshot.version}
        json_response(body)
        took["response body"] += time.process_time() - started
    n = sum(map(len, batches))
    return {name: seconds / n * 1e6 for name, seconds in took.items()}, counts


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def run(
    artifacts: Path, redis_url: str, n_batches: int, profile: bool, evaluator: str
) -> None:
    for each in EVALUATORS[evaluator]:
        use_evaluator(each)
        await run_one(artifacts, redis_url, n_batches, profile)


async def run_one(artifacts: Path, redis_url: str, n_batches: int, profile: bool) -> None:
    bundle = read_bundle(latest_version_dir(artifacts))
    customers = [str(c) for c in bundle.customer_ids]
    random.Random(7).shuffle(customers)
    batches = [customers[i : i + BATCH] for i in range(0, len(customers), BATCH)]
    batches = (batches * n_batches)[:n_batches]
    app = create_app(Settings(artifacts=artifacts, redis_url=redis_url))
    async with app_started(app):
        cost = await whole(app, batches)
        alone, counts = parts(app, batches)
        served = app.state.serving.snapshot.model.ranker_evaluators
        print(f"rankers: {served or 'none (the blend ranks)'}")
        print(f"offers batch in process: {cost:7.0f} us CPU a customer ({n_batches} x {BATCH:,})")
        for name, value in alone.items():
            print(f"  {name + ', alone:':<28} {value:7.0f} us CPU a customer")
        print(
            f"  block ranking: {counts.redone} of {counts.customers - counts.cold} known "
            f"customers ranked again by the single path, {counts.cold} cold"
        )
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            parts(app, batches)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--batches", type=int, default=4, help="batches of 1,000 ids to time")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the batch")
    parser.add_argument("--redis-url", default=None, help="a Redis to use (default: embedded)")
    parser.add_argument("--evaluator", choices=sorted(EVALUATORS), default="both",
                        help="how the rankers run (default: onnx, then native)")  # fmt: skip
    args = parser.parse_args()
    with profile_redis(args.artifacts, args.redis_url, persist=False) as url:
        asyncio.run(run(args.artifacts, url, args.batches, args.profile, args.evaluator))


if __name__ == "__main__":
    main()
