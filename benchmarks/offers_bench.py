"""Campaign throughput: customers per second through the offers batch and the offers export.

    python -m benchmarks.offers_bench [--artifacts DIR] [--rounds 3] [--channel email]

Trains on ``../shared/data/online_retail_2010-12_2011-08.csv.gz`` into ``bench-results/``
unless ``--artifacts`` names a trained root, starts ``recsys serve`` on a free loopback port
(embedded Redis unless ``RECSYS_REDIS_URL`` is set) and measures at the client:

1. ``POST /v1/offers/batch`` with batches of 1,000 customer ids (every customer of the model,
   ``--rounds`` times over, shuffled), one client and then two at once;
2. ``GET /v1/offers/export`` streamed to the end (every customer of the base is read and
   decided; the lines are those with consent and an offer);
3. in process, what the batch's costly step costs: recommended items for the customers whose
   offers need items, one by one through the hot path's ``recommend``, all together through
   ``recommended_items_many`` (what the batch and the export use: the same items), and, as a
   floor, one BLAS matrix product for the whole batch (cf only, no blend, no top k).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.latency import trained_root  # noqa: E402
from benchmarks.server import serving  # noqa: E402
from recsys.bundle import latest_version_dir, read_bundle  # noqa: E402
from recsys.store import BatchRecord, CustomerState, LiveRecord  # noqa: E402

BATCH = 1000


def batches(customers: list[str], rounds: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        order = customers[:]
        rng.shuffle(order)
        out += [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    return out


def run_batches(base: str, work: list[list[str]], channel: str, clients: int) -> tuple[int, float]:
    """Customers answered and seconds taken, ``clients`` requests in flight."""

    def one(http: httpx.Client, ids: list[str]) -> int:
        response = http.post("/v1/offers/batch", json={"customer_ids": ids, "channel": channel})
        response.raise_for_status()
        return len(response.json()["results"])

    sessions = [httpx.Client(base_url=base, timeout=60) for _ in range(clients)]
    try:
        one(sessions[0], work[0])  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            done = sum(pool.map(lambda ij: one(sessions[ij[0] % clients], ij[1]),
                                enumerate(work)))  # fmt: skip
        return done, time.perf_counter() - started
    finally:
        for session in sessions:
            session.close()


def run_export(base: str, channel: str) -> tuple[int, int, float]:
    """Lines, bytes and seconds of one whole export."""
    started = time.perf_counter()
    lines = size = 0
    with httpx.Client(base_url=base, timeout=600) as http:
        with http.stream("GET", "/v1/offers/export", params={"channel": channel}) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    lines += 1
                    size += len(line) + 1
    return lines, size, time.perf_counter() - started


def item_costs(root: Path, n: int = 1000) -> tuple[float, float, float]:
    """Microseconds per customer: the hot path's ``recommend`` one by one, the batch's
    ``recommended_items_many``, one BLAS product."""
    from serving.model_state import ItemCatalogue, ModelState, Snapshot
    from serving.offers import recommended_items, recommended_items_many

    bundle = read_bundle(latest_version_dir(root))
    model = ModelState.from_bundle(bundle)
    snapshot = Snapshot(model, ItemCatalogue.build(model, {}, revision=0))
    rows = np.arange(min(n, len(bundle.customer_ids)))
    states = []
    for row in rows.tolist():
        start, end = bundle.history.indptr[row], bundle.history.indptr[row + 1]
        record = BatchRecord(
            features={},
            user_vector=bundle.user_factors[row],
            history_items=bundle.history.indices[start:end].astype(np.int32),
            history_counts=bundle.history.data[start:end].astype(np.float32),
            history_last_days=bundle.history_last_days.data[start:end].astype(np.float32),
        )
        states.append(CustomerState(str(bundle.customer_ids[row]), record, LiveRecord()))
    slots = model.customer_models.item_slots or 4
    users = np.ascontiguousarray(bundle.user_factors[rows])

    def per_customer() -> None:
        for state in states:
            recommended_items(snapshot, state, "email", slots)

    def together() -> None:
        recommended_items_many(snapshot, states, "email", slots)

    def one_product() -> None:
        scores = users @ model.ranking.item_factors.T
        scores[:, snapshot.catalog.blocked] = -np.inf
        np.argpartition(-scores, slots, axis=1)[:, :slots]

    same = recommended_items_many(snapshot, states, "email", slots) == [
        recommended_items(snapshot, state, "email", slots) for state in states
    ]
    if not same:
        raise AssertionError("recommended_items_many differs from recommended_items")
    return (
        best_us(per_customer, len(states)),
        best_us(together, len(states)),
        best_us(one_product, len(states)),
    )


def best_us(work: Callable[[], None], n: int, repeats: int = 3) -> float:
    """Microseconds per customer, the best of ``repeats`` warm runs."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channel", default="email")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    root = trained_root(args.artifacts)
    bundle = read_bundle(latest_version_dir(root))
    customers = [str(c) for c in bundle.customer_ids]
    work = batches(customers, args.rounds)
    n_offers = len(bundle.extra.get("offers", {}).get("offers", []))
    print(
        f"model {bundle.version}: {len(customers):,} customers, {len(bundle.items):,} items, "
        f"{bundle.item_factors.shape[1]} factors; {n_offers} offers in the bundle's catalogue "
        f"(0: the default one); workers={args.workers}, channel={args.channel}"
    )
    del bundle
    with serving(root, workers=args.workers) as base:
        for clients in (1, 2):
            done, seconds = run_batches(base, work, args.channel, clients)
            print(
                f"offers batch ({BATCH:,} ids, {clients} client(s))   {done:>8,} customers "
                f"in {seconds:6.2f} s  {done / seconds:>9,.0f} customers/s  "
                f"{seconds / len(work) * 1000:7.1f} ms/batch",
                flush=True,
            )
        run_export(base, args.channel)  # warm-up
        lines, size, seconds = run_export(base, args.channel)
        print(
            f"offers export (NDJSON stream)            {len(customers):>8,} customers "
            f"in {seconds:6.2f} s  {len(customers) / seconds:>9,.0f} customers/s  "
            f"{lines:,} lines ({size / 1e6:.1f} MB) of eligible customers",
            flush=True,
        )
    per_customer, together, blas = item_costs(root)
    print(
        f"recommended items for offers: hot-path recommend {per_customer:7.1f} us/customer; "
        f"recommended_items_many {together:6.1f} us/customer (the same items); "
        f"one BLAS product for the batch {blas:6.1f} us/customer (cf only, no blend)"
    )


if __name__ == "__main__":
    main()
