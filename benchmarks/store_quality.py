"""What the compact store costs in quality: served NDCG@20 with the batch record as Redis holds it.

    python -m benchmarks.store_quality [--split 2011-06-01] [--caps 16,32,64]

Trains once on the shared purchase data before ``--split`` (as ``recsys evaluate`` does), then
scores the served ranking (``training.evaluate``, both tasks, the same customers and relevant
items) with each customer's record as a bulk load stores it: the factor vector as float32 or
float16 (``serving.compact_vectors``) and the purchase history whole or cut to its most recent
``cap`` items (``serving.max_history_items``, ``feature_store.bulk_load.History``). Prints
NDCG@20 and recall@20 per variant with the difference to float32 / whole history and its 95%
paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks.quality import DATA, TEST_SPLIT  # noqa: E402
from feature_store.bulk_load import History  # noqa: E402
from recsys.bundle import ModelBundle  # noqa: E402
from recsys.io.loaders import load_interactions  # noqa: E402
from recsys.ranking.scoring import RankingModel  # noqa: E402
from recsys.ranking.topk_metrics import hit_matrix, ndcg_at_k, recall_at_k  # noqa: E402
from training.bootstrap import paired_difference, resample_weights  # noqa: E402
from training.build import BuildOptions, build_bundle  # noqa: E402
from training.evaluate import ground_truth, rank_users  # noqa: E402

K = 20


def stored(bundle: ModelBundle, half: bool, cap: int | None) -> ModelBundle:
    """``bundle`` with the user vectors and history a bulk load would store."""
    factors = bundle.user_factors
    if half:
        factors = factors.astype("<f2").astype(np.float32)
    history = History.of(bundle, cap)
    shape = bundle.history.shape
    counts = sp.csr_matrix((history.counts, history.items, history.indptr), shape=shape)
    days = sp.csr_matrix((history.days, history.items, history.indptr), shape=shape)
    return replace(bundle, user_factors=factors, history=counts, history_last_days=days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=Path, default=DATA)
    parser.add_argument("--split", default=TEST_SPLIT)
    parser.add_argument("--caps", default="16,32,64")
    args = parser.parse_args()
    loaded = load_interactions(args.events)
    data, split = loaded.interactions, pd.Timestamp(args.split)
    catalog = loaded.catalog
    if catalog is not None:  # derived from the whole file: keep what was sold before the split
        before = data.loc[data["timestamp"].lt(split), "item_id"].dropna().unique()
        catalog = catalog.loc[catalog["item_id"].isin(before)]
    options = BuildOptions(with_features=False, with_churn=False)
    bundle = build_bundle(data, catalog, split, options=options)
    eval_set = ground_truth(bundle, data.loc[data["timestamp"].ge(split)])
    variants: dict[str, tuple[bool, int | None]] = {
        "f32, whole history": (False, None),
        "f16, whole history": (True, None),
    }
    for limit in (int(c) for c in args.caps.split(",") if c):
        variants[f"f16, history cap {limit}"] = (True, limit)
    model = RankingModel.from_bundle(bundle)
    reference: dict[str, np.ndarray] = {}
    for name, (half, cap) in variants.items():
        variant = stored(bundle, half, cap)
        for task in ("discovery", "all"):
            users, relevant = eval_set.users[task], eval_set.relevant[task]
            ranked = rank_users("served", variant, model, users, K, task == "discovery")
            hits = hit_matrix(ranked, relevant)
            ndcg = ndcg_at_k(hits, np.diff(relevant.indptr), K)
            recall = recall_at_k(hits, np.diff(relevant.indptr), K)
            line = f"{task:9} {name:24} ndcg@{K} {ndcg.mean():.4f} recall@{K} {recall.mean():.4f}"
            if task in reference:
                weights = resample_weights(len(ndcg))
                d = paired_difference(ndcg, reference[task], weights)
                line += (
                    f"  ndcg - f32 whole: {d['value']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"
                    f" ({d['value'] / reference[task].mean():+.2%})"
                )
            else:
                reference[task] = ndcg
            print(line, flush=True)


if __name__ == "__main__":
    main()
