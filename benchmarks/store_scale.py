"""The feature store at a million customers without training one: a bundle tiled, then loaded.

    python -m benchmarks.store_scale --artifacts DIR [--customers 1000000] [--max-history N]

Reads the newest bundle under ``--artifacts`` (e.g. one ``benchmarks.scale`` trained at 100k
customers), repeats its customers until there are ``--customers`` (copy ``k`` of customer ``c``
is ``c-k``, with the same features, factor row and history), bulk-loads that into an embedded
Redis as ``benchmarks.scale`` does and prints the same figures: rate per wall and CPU second,
Redis bytes per customer (INFO and ``MEMORY USAGE``), the records' encoding. Only the store
side is measured: training at that size is ``benchmarks.scale``'s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.scale import PREFIX, bulk_load
from feature_store.connection import connect
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import ModelBundle, latest_version_dir, read_bundle


def tiled(bundle: ModelBundle, customers: int) -> ModelBundle:
    """``bundle`` with its customers repeated up to ``customers`` (ids ``<id>-<copy>``)."""
    n = len(bundle.customer_ids)
    copies = -(-customers // n)
    ids = np.asarray(bundle.customer_ids).astype(str)
    new_ids = np.concatenate([np.char.add(ids, f"-{k}") for k in range(copies)])[:customers]
    rows = np.tile(np.arange(n), copies)[:customers]
    features = bundle.features
    by_id = features.set_index(features["customer_id"].astype(str))
    table = by_id.reindex(ids[rows]).reset_index(drop=True)
    table["customer_id"] = new_ids
    return replace(
        bundle,
        customer_ids=new_ids,
        user_factors=bundle.user_factors[rows],
        history=sp.csr_matrix(bundle.history.tocsr()[rows]),
        history_last_days=sp.csr_matrix(bundle.history_last_days.tocsr()[rows]),
        features=pd.DataFrame(table),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--max-history", type=int, default=None)
    args = parser.parse_args()
    bundle = tiled(read_bundle(latest_version_dir(args.artifacts)), args.customers)
    print(
        f"bundle       {len(bundle.customer_ids):,} customers, {len(bundle.items):,} items, "
        f"{bundle.user_factors.shape[1]} factors, {bundle.history.nnz:,} history entries"
    )
    with tempfile.TemporaryDirectory() as work, EmbeddedRedis(Path(work), persist=False) as server:
        store = RedisFeatureStore(connect(server.url, timeout_ms=60_000), PREFIX)
        bulk_load(store, bundle, args.max_history)
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"loader       peak resident memory {peak:.2f} GB")


if __name__ == "__main__":
    main()
