"""Feature-store figures: bulk-load throughput and read latency against a real Redis.

    python benchmarks/store_bench.py [--records 50000] [--factors 64] [--reads 2000]

Uses ``RECSYS_REDIS_URL`` when set (keys under a throw-away prefix, deleted afterwards),
otherwise an embedded ``redis-server`` in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from feature_store.bulk_load import ensure_loaded, records_from_bundle
from feature_store.connection import connect
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import DataWindow, ItemTable, Manifest, ModelBundle
from recsys.store import ReadPlan


def synthetic_bundle(n: int, factors: int, n_items: int = 3000, seed: int = 7) -> ModelBundle:
    """A bundle shaped like a trained one: 14 features, factors, ~20 history items each."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:07d}" for i in range(n)])
    lengths = rng.integers(1, 40, size=n)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    nnz = int(indptr[-1])
    cols = rng.integers(0, n_items, size=nnz).astype(np.int32)
    history = sp.csr_matrix(
        (rng.integers(1, 10, nnz).astype(np.float32), cols, indptr), shape=(n, n_items)
    )
    last_days = sp.csr_matrix(
        (rng.integers(0, 270, nnz).astype(np.float32), cols, indptr), shape=(n, n_items)
    )
    features = pd.DataFrame(
        {
            "customer_id": ids,
            "recency_days": rng.integers(0, 400, n).astype(float),
            "frequency": rng.integers(1, 50, n),
            "monetary": rng.gamma(2.0, 300.0, n).round(2),
            "avg_order_value": rng.gamma(2.0, 40.0, n).round(2),
            "tenure_days": rng.integers(0, 700, n),
            "clv": rng.gamma(2.0, 500.0, n).round(2),
            "churn_risk": rng.random(n),
            "segment": pd.Series(rng.choice(["champions", "loyal", "at_risk"], n), dtype="string"),
            "journey_stage": rng.choice(["purchase", "retention", "advocacy"], n),
            "nps": np.where(rng.random(n) < 0.8, np.nan, rng.integers(0, 11, n)),
            "csat": np.where(rng.random(n) < 0.8, np.nan, rng.integers(1, 6, n)),
            "last_purchase_at": pd.Timestamp("2011-08-31")
            - pd.to_timedelta(rng.integers(0, 270, n), unit="D"),
            "country": "United Kingdom",
        }
    )
    empty_f4 = np.zeros(0, dtype=np.float32)
    return ModelBundle(
        manifest=Manifest(
            version="bench",
            created_at=datetime.now(UTC),
            data=DataWindow(source="synthetic", format="events", as_of=datetime.now(UTC)),
        ),
        items=ItemTable(
            np.array([str(i) for i in range(n_items)]),
            np.array([""] * n_items),
            np.array([""] * n_items),
            np.ones(n_items, np.float32),
            np.ones(n_items, bool),
            np.ones(n_items, bool),
        ),
        customer_ids=ids,
        user_factors=rng.standard_normal((n, factors), dtype=np.float32),
        item_factors=rng.standard_normal((n_items, factors), dtype=np.float32),
        neighbour_indices=np.zeros((n_items, 0), np.int32),
        neighbour_scores=np.zeros((n_items, 0), np.float32),
        popular=np.zeros(0, np.int32),
        popular_scores=empty_f4,
        trending=np.zeros(0, np.int32),
        trending_scores=empty_f4,
        history=history,
        history_last_days=last_days,
        features=features,
    )


def _server_cpu_s(store: RedisFeatureStore) -> float:
    info = store.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run(url: str, records: int, factors: int, reads: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    loader = RedisFeatureStore(connect(url, timeout_ms=5000), prefix)
    reader = RedisFeatureStore(connect(url, timeout_ms=50), prefix)
    reader_admin = RedisFeatureStore(connect(url, timeout_ms=1000), prefix)
    bundle = synthetic_bundle(records, factors)
    version = bundle.version
    try:
        started = time.perf_counter()
        converted = sum(1 for _ in records_from_bundle(bundle))
        convert_s = time.perf_counter() - started
        print(
            f"records_from_bundle: {converted} records in {convert_s:.2f} s "
            f"= {converted / convert_s:,.0f} records/s (no Redis)"
        )
        server_cpu = _server_cpu_s(loader)
        client_cpu = time.process_time()
        started = time.perf_counter()
        loaded = ensure_loaded(loader, bundle)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = _server_cpu_s(loader) - server_cpu
        assert loaded and loader.active_version() == version
        print(
            f"bulk load (ensure_loaded): {records} records ({factors} factors) in "
            f"{elapsed:.2f} s = {records / elapsed:,.0f} records/s; CPU: client {client_cpu:.2f} s "
            f"({records / client_cpu:,.0f} records/s), redis-server {server_cpu:.2f} s"
        )

        rng = np.random.default_rng(1)
        ids = [f"c{i:07d}" for i in rng.integers(0, records, size=reads)]
        reader.read_customer(version, ids[0])  # open the connection
        samples = []
        for customer_id in ids:
            t0 = time.perf_counter()
            state = reader.read_customer(version, customer_id)
            samples.append((time.perf_counter() - t0) * 1e6)
            assert state.batch is not None
        print(
            f"read_customer ({reads} reads): p50 {percentile(samples, 50):.0f} µs, "
            f"p99 {percentile(samples, 99):.0f} µs, mean {statistics.fmean(samples):.0f} µs"
        )

        batch = [f"c{i:07d}" for i in range(min(1000, records))]
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            reader.read(ReadPlan.of(version, batch))
            timings.append((time.perf_counter() - t0) * 1e3)
        print(
            f"read_customers ({len(batch)} ids, 20 runs): p50 {percentile(timings, 50):.1f} ms, "
            f"max {max(timings):.1f} ms"
        )

        t0 = time.perf_counter()
        held = reader_admin.export_customer("c0000001")
        export_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        removed = reader_admin.erase_customer("c0000001")
        erase_ms = (time.perf_counter() - t0) * 1e3
        print(
            f"export_customer: {export_ms:.0f} ms, erase_customer: {erase_ms:.0f} ms "
            f"({removed} key(s); both SCAN the {records:,}-customer keyspace)"
        )
        assert held["batch"]
    finally:
        loader.client.delete(f"{prefix}:meta:active")
        removed = loader.delete_version(version)
        print(f"cleanup: {removed} keys unlinked")
        loader.close()
        reader.close()
        reader_admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--reads", type=int, default=2_000)
    args = parser.parse_args()
    url = os.environ.get("RECSYS_REDIS_URL")
    if url:
        run(url, args.records, args.factors, args.reads)
        return
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), persist=False) as server:
        print(f"embedded redis-server at {server.url}")
        run(server.url, args.records, args.factors, args.reads)


if __name__ == "__main__":
    main()
