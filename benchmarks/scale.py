"""A large synthetic shop end to end: generate, train, bulk-load, serve, measure.

    python -m benchmarks.scale [--customers N] [--items M] [--days D] [--work DIR]

Defaults: 1,000,000 customers x 100,000 items (``--customers 100000 --items 20000`` finishes
in minutes). Steps, each timed: the streaming generator writes ``events.parquet``;
``recsys train`` runs as a child process (its time and peak resident memory are reported);
the bundle is bulk-loaded into an embedded Redis (``feature_store.bulk_load.load_bundle``:
packed features, float16 vectors, the whole history unless ``--max-history``), reporting the
rate in wall time and per CPU second of this process and of Redis (on a shared machine the
CPU figures move least), Redis bytes per customer (INFO used_memory delta / customers, and
``MEMORY USAGE`` of a sample of batch records) and their encoding; ``recsys serve`` (2
workers) answers home page views for random known customers at 8 connections; last, in
process, the page view's top 20 with candidate retrieval is compared with exact scoring for a
sample of customers, their records read from the store (recall@20). ``--skip-train`` reuses
the newest bundle under ``--work``. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.http_load import RequestSpec, run_load
from benchmarks.server import serving
from feature_store import keys
from feature_store.bulk_load import load_bundle
from feature_store.connection import connect
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import ModelBundle, latest_version_dir, read_bundle
from recsys.io.synthetic import write_synthetic
from recsys.store import ReadPlan

PREFIX = "scale"


def generate(work: Path, customers: int, items: int, days: int) -> tuple[Path, Path]:
    events, catalog_path = work / "events.parquet", work / "catalog.csv"
    if not events.is_file():
        t = time.perf_counter()
        count, catalog = write_synthetic(events, customers, items, days)
        catalog.to_csv(catalog_path, index=False)
        print(f"generate     {count:,} events in {time.perf_counter() - t:.0f} s")
    return events, catalog_path


def train(events: Path, catalog: Path, artifacts: Path) -> None:
    command = [
        sys.executable, "-m", "pelanggan.cli", "train", "--events", str(events),
        "--catalog", str(catalog), "--out", str(artifacts),
    ]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"train        {seconds / 60:.1f} min, peak resident memory {peak_gb:.2f} GB")


def _redis_cpu(store: RedisFeatureStore) -> float:
    info = store.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bulk_load(store: RedisFeatureStore, bundle: ModelBundle, max_history: int | None) -> None:
    before, redis_before = int(store.client.info("memory")["used_memory"]), _redis_cpu(store)
    t, cpu = time.perf_counter(), time.process_time()
    written = load_bundle(store, bundle, compact=True, max_history=max_history)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    redis_cpu = _redis_cpu(store) - redis_before
    store.activate(bundle.version)
    used = int(store.client.info("memory")["used_memory"]) - before
    print(
        f"bulk load    {written:,} customers in {seconds:.1f} s: {written / seconds:,.0f} /s wall; "
        f"{cpu:.1f} CPU s here ({written / cpu:,.0f} /CPU s), {redis_cpu:.1f} CPU s in Redis"
    )
    ids = np.random.default_rng(0).choice(np.asarray(bundle.customer_ids).astype(str), 2000)
    pipe = store.client.pipeline(transaction=False)
    for cid in ids.tolist():
        key = keys.customer_batch(PREFIX, cid, bundle.version)
        pipe.memory_usage(key, samples=0)
        pipe.object("encoding", key)
    replies = pipe.execute()
    sizes, encodings = replies[::2], {e.decode() for e in replies[1::2] if e}
    print(
        f"redis        {used / written:,.0f} bytes per customer (INFO used_memory / customers); "
        f"MEMORY USAGE of {len(ids)} batch records: mean {np.mean(sizes):,.0f} B, "
        f"p99 {np.percentile(sizes, 99):,.0f} B; encoding {', '.join(sorted(encodings))}"
    )


def page_views(
    artifacts: Path, url: str, bundle: ModelBundle, requests: int, hist: int | None
) -> None:
    env = {
        "RECSYS_REDIS_URL": url,
        "RECSYS_REDIS_PREFIX": PREFIX,
        "RECSYS_API_KEYS": "",
        "RECSYS_SERVING__COMPACT_VECTORS": "true",
    }
    if hist is not None:
        env["RECSYS_SERVING__MAX_HISTORY_ITEMS"] = str(hist)
    customers = [str(c) for c in bundle.customer_ids[:: max(1, len(bundle.customer_ids) // 20000)]]
    rng = random.Random(1)

    def home(_: int) -> RequestSpec:
        return "GET", f"/v1/customers/{rng.choice(customers)}/recommendations?k=10", None

    with serving(artifacts, workers=2, env=env, timeout_s=900) as base:
        run_load(base, home, concurrency=8, total=500)  # warm-up
        result = run_load(base, home, concurrency=8, total=requests)
    print(result.line("page view, 8 connections"))
    print(f"page view    p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")


def retrieval_recall(store: RedisFeatureStore, bundle: ModelBundle, sample: int) -> None:
    from serving.model_state import ItemCatalogue, ModelState, Snapshot
    from serving.recommend import RecommendationQuery, recommend

    exact_model = ModelState.from_bundle(bundle, retrieval_min_items=len(bundle.items) + 1)
    approx_model = ModelState.from_bundle(bundle, retrieval_min_items=1)
    exact = Snapshot(exact_model, ItemCatalogue.build(exact_model, {}, revision=-1))
    approx = Snapshot(approx_model, ItemCatalogue.build(approx_model, {}, revision=-1))
    rng = np.random.default_rng(0)
    ids = rng.choice(np.asarray(bundle.customer_ids).astype(str), sample, replace=False)
    states = store.read(ReadPlan.of(bundle.version, ids.tolist(), contacts=False)).states
    query = RecommendationQuery(k=20)
    recalls, t_exact, t_approx = [], 0.0, 0.0
    for state in states:
        t = time.perf_counter()
        want = recommend(exact, state, query)[1].rows
        t_exact += time.perf_counter() - t
        t = time.perf_counter()
        got = recommend(approx, state, query)[1].rows
        t_approx += time.perf_counter() - t
        recalls.append(len(set(want.tolist()) & set(got.tolist())) / max(1, len(want)))
    print(
        f"retrieval    recall@20 vs exact {np.mean(recalls):.3f} over {sample} customers; "
        f"in-process recommend {1000 * t_exact / sample:.2f} ms exact, "
        f"{1000 * t_approx / sample:.2f} ms with retrieval"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--work", type=Path, default=None, help="default bench-results/scale-CxI")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--max-history", type=int, default=None, help="history cap (costs discovery quality)"
    )
    parser.add_argument("--skip-train", action="store_true", help="reuse the newest bundle")
    parser.add_argument("--recall-sample", type=int, default=500)
    args = parser.parse_args()
    work = args.work or Path(f"bench-results/scale-{args.customers}x{args.items}")
    work.mkdir(parents=True, exist_ok=True)
    artifacts = work / "artifacts"
    if not args.skip_train:
        events, catalog = generate(work, args.customers, args.items, args.days)
        train(events, catalog, artifacts)
    bundle = read_bundle(latest_version_dir(artifacts))
    with EmbeddedRedis(work / "redis", persist=False) as server:
        store = RedisFeatureStore(connect(server.url, timeout_ms=60_000), PREFIX)
        bulk_load(store, bundle, args.max_history)
        page_views(artifacts, server.url, bundle, args.requests, args.max_history)
        retrieval_recall(store, bundle, args.recall_sample)
        store.close()


if __name__ == "__main__":
    main()
