"""CPU cost of one ``recommend()`` call in process (no HTTP, no store): the blend against the
two-stage ranking (candidates + the learned ranker's ONNX run).

    python -m benchmarks.recommend_cost --artifacts DIR [--requests N] [--customers N]

Loads the newest version under ``DIR``, takes real customers of the bundle (their stored vector
and history, no live activity), and times ``N`` calls per query kind with ``time.process_time``
(CPU of this process, so other load on the machine matters less), once as trained (the
rankers the manifest serves) and once with the blend alone (the rankers removed). Prints CPU
microseconds per call and the candidate-set size.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from recsys.bundle import ModelBundle, latest_version_dir, read_bundle
from recsys.ranking.candidates import candidates_for
from recsys.store import BatchRecord, CustomerState, LiveRecord
from serving.model_state import ItemCatalogue, ModelState, Snapshot
from serving.recommend import RecommendationQuery, recommend


def customers_of(bundle: ModelBundle, n: int, seed: int = 0) -> list[CustomerState]:
    history, ages = bundle.history, bundle.history_last_days
    known = np.flatnonzero(np.diff(history.indptr) > 0)
    rng = np.random.default_rng(seed)
    picked = rng.choice(known, min(n, len(known)), replace=False)
    views = tuple(str(i) for i in bundle.items.item_ids[bundle.popular[:3]])
    out = []
    for u in picked.tolist():
        lo, hi = history.indptr[u], history.indptr[u + 1]
        record = BatchRecord(
            features={},
            user_vector=bundle.user_factors[u],
            history_items=history.indices[lo:hi].astype(np.int32),
            history_counts=history.data[lo:hi],
            history_last_days=ages.data[lo:hi],
        )
        out.append(CustomerState(str(bundle.customer_ids[u]), record, LiveRecord(views)))
    return out


def cost_us(snapshot: Snapshot, customers: list[CustomerState], query: RecommendationQuery,
            requests: int) -> float:  # fmt: skip
    for customer in customers[:20]:  # warm
        recommend(snapshot, customer, query)
    started = time.process_time()
    for n in range(requests):
        recommend(snapshot, customers[n % len(customers)], query)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="trained artifact root")
    parser.add_argument("--requests", type=int, default=3000, help="calls per query kind")
    parser.add_argument("--customers", type=int, default=500, help="distinct customers used")
    args = parser.parse_args()
    bundle = read_bundle(latest_version_dir(args.artifacts))
    model = ModelState.from_bundle(bundle)
    blend = dataclasses.replace(model, ranking=dataclasses.replace(model.ranking, rankers={}))
    customers = customers_of(bundle, args.customers)
    queries = {
        "home (recent views), new items": RecommendationQuery(k=10, context="home"),
        "email, bought items allowed": RecommendationQuery(
            k=10, context="email", exclude_purchased=False
        ),
    }
    print(f"version {bundle.version}: {len(bundle.items)} items, rankers for "
          f"{sorted(model.ranking.rankers)}")  # fmt: skip
    if model.ranking.signals is not None:
        sizes = [
            candidates_for(
                model.ranking,
                model.ranking.signals,
                (
                    c.batch.user_vector,
                    c.batch.history_items.astype(np.int64),
                    c.batch.history_counts,
                    c.batch.history_last_days,
                ),  # fmt: skip
                10,
                None,
            ).rows.size
            for c in customers[:200]
            if c.batch is not None
        ]
        print(f"candidates per customer: median {np.median(sizes):.0f}, max {max(sizes)}")
    for name, query in queries.items():
        for label, state in (("served", model), ("blend", blend)):
            snapshot = Snapshot(state, ItemCatalogue.build(state, {}, revision=-1))
            us = cost_us(snapshot, customers, query, args.requests)
            print(f"{name:34s} {label:7s} {us:8.1f} us CPU per recommend()")


if __name__ == "__main__":
    main()
