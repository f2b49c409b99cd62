"""Real-time events benchmark: ingestion throughput, purchase-to-recommendation delay, fold-in.

    python benchmarks/events_bench.py [--artifacts DIR] [--seconds 15] [--out events.json]

1. **Fold-in quality** (offline, pure numpy): a bundle trained before 2011-06-01 on the shared
   data; customers with no history before that date are replayed from June to August. After
   their first 1, 3 and 5 purchase events (lines, in time order) their vector is folded in
   (``recsys.ranking.foldin``, the event path's code) and the top 20 are scored against the items of
   their *later orders*: HitRate@20 and NDCG@20 of the fold-in alone, of the served blend with
   and without the folded vector (``recsys.ranking.scoring.score_items``), and of the popularity
   fallback a cold-start customer gets.
2. **Ingestion throughput**: ``recsys serve`` with ``--workers`` processes (default 2) on
   127.0.0.1 (embedded Redis unless ``RECSYS_REDIS_URL`` is set), ``POST /v1/events`` with real
   June-August purchase lines, each sent with an event id never sent before (so every event is
   applied: none is a duplicate): in batches of 100 consecutive lines (``--batch-connections``
   clients, default 2); one event at a time at 8 connections (p50/p99), in file order (lines of
   one order: the same customer from all 8 at once) and drawn at random; and **8 concurrent
   writers** of batches of 100 lines drawn at random (so ~100 customers each, overlapping
   between writers): every answer must be a 2xx. Each run is bounded by ``--seconds`` and
   ``--max-requests``. The load generator shares the machine with the server.
3. **Purchase to recommendation**: for known customers, the top recommended item is bought;
   the time from the purchase's 202 to a recommendation call that no longer offers it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.http_load import run_load  # noqa: E402
from benchmarks.server import served, tree_cpu_seconds  # noqa: E402
from recsys.bundle import ModelBundle, latest_version_dir, read_bundle  # noqa: E402
from recsys.ranking.foldin import FoldIn  # noqa: E402
from recsys.ranking.scoring import RankingModel, score_items, top_k  # noqa: E402
from recsys.ranking.topk_metrics import hit_rate_at_k, ndcg_at_k  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_FILE = DATA / "online_retail_2010-12_2011-08.csv.gz"
SPLIT = "2011-06-01"
K = 20
STEPS = (1, 3, 5)


# -- 1. fold-in quality -----------------------------------------------------------------------


def _purchases(interactions: pd.DataFrame) -> pd.DataFrame:
    rows = interactions.loc[
        interactions["event_type"].eq("purchase")
        & interactions["customer_id"].notna()
        & interactions["is_product"]
    ]
    return rows[["customer_id", "item_id", "timestamp", "order_id", "quantity", "price"]]


def foldin_quality(bundle: ModelBundle, interactions: pd.DataFrame) -> dict[str, Any]:
    split = pd.Timestamp(SPLIT)
    known = set(interactions.loc[interactions["timestamp"].lt(split), "customer_id"].dropna())
    later = _purchases(interactions.loc[interactions["timestamp"].ge(split)])
    later = later.loc[~later["customer_id"].isin(known)].sort_values("timestamp", kind="stable")
    item_ids = bundle.items.item_ids.astype(str)
    row_of = {item: row for row, item in enumerate(item_ids.tolist())}
    params = bundle.manifest.params.get("training", {})
    fold = FoldIn.from_factors(bundle.item_factors, params["regularization"], params["alpha"])
    ranking = RankingModel.from_bundle(bundle)
    never = ~np.asarray(bundle.items.is_product, dtype=bool)
    methods = ("foldin_cf", "served_with_foldin", "served_without_vector", "popularity")
    out: dict[str, Any] = {"new_customers": int(later["customer_id"].nunique())}
    for n in STEPS:
        hits: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        n_rel: list[int] = []
        for _, lines in later.groupby("customer_id", sort=False):
            rows = np.array([row_of.get(i, -1) for i in lines["item_id"]], dtype=np.int64)
            if len(rows) <= n or (rows[:n] < 0).any():
                continue
            cut = lines["timestamp"].iloc[n - 1]
            first_orders = set(lines["order_id"].iloc[:n])
            seen = np.unique(rows[:n])
            later_lines = (lines["timestamp"] > cut).to_numpy() & ~lines["order_id"].isin(
                first_orders
            ).to_numpy()
            target = np.setdiff1d(rows[later_lines & (rows >= 0)], seen)
            if target.size == 0:
                continue
            orders = lines.iloc[:n].groupby("item_id")["order_id"].nunique()
            weights = np.array([orders[item_ids[r]] for r in seen], dtype=np.float64)
            vector = fold.user_vector(seen, weights)
            blocked = never.copy()
            blocked[seen] = True
            ages = np.zeros(seen.size, dtype=np.float32)
            counts = weights.astype(np.float32)
            scores = {
                "foldin_cf": bundle.item_factors @ vector,
                "served_with_foldin": score_items(ranking, vector, seen, counts, ages).total,
                "served_without_vector": score_items(ranking, None, seen, counts, ages).total,
                "popularity": ranking.popularity,
            }
            for method, values in scores.items():
                top, _ = top_k(values, K, blocked)
                hits[method].append(np.isin(top, target))
            n_rel.append(int(target.size))
        relevant = np.array(n_rel)
        step: dict[str, Any] = {"customers": len(n_rel)}
        for method in methods:
            h = np.array(hits[method], dtype=bool).reshape(-1, K)
            step[method] = {
                f"hit_rate@{K}": round(float(hit_rate_at_k(h, K).mean()), 4),
                f"ndcg@{K}": round(float(ndcg_at_k(h, relevant, K).mean()), 4),
            }
        out[f"after_{n}_purchases"] = step
    return out


# -- 2. and 3. over HTTP ----------------------------------------------------------------------


@contextlib.contextmanager
def redis_url(work: Path) -> Iterator[str]:
    url = os.environ.get("RECSYS_REDIS_URL")
    if url:
        yield url
        return
    from feature_store.embedded import EmbeddedRedis

    with EmbeddedRedis(work / "redis", persist=True) as server:
        yield server.url


def _event_bodies(interactions: pd.DataFrame) -> list[dict[str, Any]]:
    rows = _purchases(interactions.loc[interactions["timestamp"].ge(pd.Timestamp(SPLIT))])
    run = uuid.uuid4().hex[:8]
    return [
        {
            "customer_id": str(r.customer_id),
            "event_type": "purchase",
            "timestamp": r.timestamp.isoformat(),
            "item_id": str(r.item_id),
            "quantity": float(r.quantity),
            "price": float(r.price) if np.isfinite(r.price) and r.price > 0 else None,
            "order_id": str(r.order_id),
            "event_id": f"bench-{run}-{i}",
        }
        for i, r in enumerate(rows.itertuples(index=False))
    ]


def _embedded_redis_cpu() -> float:
    """CPU seconds of an embedded Redis: a child of one of this process's threads."""
    threads = os.listdir(f"/proc/{os.getpid()}/task") if os.path.isdir("/proc") else []
    return sum(tree_cpu_seconds(int(tid))[1] for tid in threads)


def fresh_chunk(
    events: list[dict[str, Any]], position: int, batch: int, tag: str
) -> list[dict[str, Any]]:
    """The ``batch`` events from ``position`` on (wrapping around ``events``), each with an
    event id no other run, phase (``tag``) or lap has sent: every event is applied, never a
    duplicate (a run that re-sent ids would measure the duplicate path)."""
    lap, start = divmod(position, max(len(events) - batch, 1))
    return [{**e, "event_id": f"{e['event_id']}-{tag}{lap}"} for e in events[start : start + batch]]


def throughput(
    base: str, events: list[dict[str, Any]], batch: int, concurrency: int, args: Any, pid: int
) -> dict[str, Any]:
    """Events per second at the client, latency, and the CPU the server's processes and Redis
    spent per event (``/proc``: the figure other load on a shared machine moves least)."""
    offset = {"n": 0}
    tag = uuid.uuid4().hex[:6]  # this phase's ids: never one an earlier phase sent

    def request(i: int) -> tuple[str, str, object]:
        chunk = fresh_chunk(events, offset["n"] + i * batch, batch, tag)
        return "POST", "/v1/events", chunk[0] if batch == 1 else {"events": chunk}

    warm = run_load(base, request, concurrency=concurrency, total=20)
    offset["n"] += 20 * batch
    total = int(min(args.max_requests, max(50, warm.rps * args.seconds)))
    service_before, redis_before = tree_cpu_seconds(pid)[0], _embedded_redis_cpu()
    result = run_load(base, request, concurrency=concurrency, total=total)
    service, redis = tree_cpu_seconds(pid)[0], _embedded_redis_cpu()
    n_events = max(result.requests * batch, 1)
    offset["n"] += total * batch
    non_2xx = sum(n for status, n in result.status_counts.items() if not 200 <= status < 300)
    return {
        "batch": batch,
        "connections": concurrency,
        "non_2xx": non_2xx,
        "requests": result.requests,
        "errors": result.errors,
        "status": result.status_counts,
        "seconds": round(result.seconds, 2),
        "events_per_s": round(result.requests * batch / result.seconds, 1),
        "requests_per_s": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "service_cpu_us_per_event": round((service - service_before) / n_events * 1e6, 1),
        "redis_cpu_us_per_event": round((redis - redis_before) / n_events * 1e6, 1),
    }


def purchase_to_recommendation(base: str, customers: list[str]) -> dict[str, Any]:
    delays: list[float] = []
    first_read = 0
    with httpx.Client(base_url=base, timeout=5) as http:
        for customer in customers:
            url = f"/v1/customers/{customer}/recommendations"
            items = http.get(url, params={"k": 10}).json()["items"]
            if not items:
                continue
            item = items[0]["item_id"]
            event = {"customer_id": customer, "event_type": "purchase", "item_id": item}
            assert http.post("/v1/events", json=event).status_code == 202
            acknowledged = time.perf_counter()
            for attempt in range(100):
                got = [i["item_id"] for i in http.get(url, params={"k": 10}).json()["items"]]
                if item not in got:
                    delays.append((time.perf_counter() - acknowledged) * 1000)
                    first_read += attempt == 0
                    break
    ms = np.array(delays)
    return {
        "customers": len(customers),
        "excluded": len(delays),
        "excluded_on_first_read": first_read,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms.size else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if ms.size else None,
        "max_ms": round(float(ms.max()), 2) if ms.size else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=None, help="trained before 2011-06-01")
    parser.add_argument("--seconds", type=float, default=15.0, help="per throughput run")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=100, help="purchase-to-rec probes")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-quality", action="store_true", help="no fold-in quality part")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-connections", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--events", type=Path, default=DATA_FILE, help="the shared data file")
    args = parser.parse_args()

    from recsys.io.loaders import load_interactions

    interactions = load_interactions(args.events).interactions
    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
        work = Path(tmp)
        artifacts = args.artifacts
        if artifacts is None:
            from training.pipeline import train_bundle

            artifacts = work / "artifacts"
            train_bundle(args.events, artifacts, as_of=SPLIT, holdout_days=None)
        bundle = read_bundle(latest_version_dir(artifacts))
        report: dict[str, Any] = {"model_version": bundle.version, "split": SPLIT}
        if not args.skip_quality:
            report["foldin_quality"] = foldin_quality(bundle, interactions)
            print(json.dumps(report["foldin_quality"], indent=2), flush=True)
        if not args.skip_http:
            events = _event_bodies(interactions)
            shuffled = [events[i] for i in np.random.default_rng(3).permutation(len(events))]
            rng = np.random.default_rng(7)
            probes = rng.choice(bundle.customer_ids.astype(str), args.customers, replace=False)
            with (
                redis_url(work) as url,
                served(
                    artifacts,
                    env={
                        "RECSYS_REDIS_URL": url,
                        "RECSYS_REDIS_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
                        "RECSYS_API_KEYS": "",
                    },
                    workers=args.workers,
                    timeout_s=300,  # the first start bulk-loads the features
                ) as (base, server),
            ):
                report["workers"] = args.workers
                report["throughput_batch_100"] = throughput(
                    base, events, 100, args.batch_connections, args, server.pid
                )
                print(json.dumps(report["throughput_batch_100"]), flush=True)
                report["throughput_single"] = throughput(base, events, 1, 8, args, server.pid)
                print(json.dumps(report["throughput_single"]), flush=True)
                report["throughput_single_random"] = throughput(
                    base, shuffled, 1, 8, args, server.pid
                )
                print(json.dumps(report["throughput_single_random"]), flush=True)
                report["concurrent_writers_random_100"] = throughput(
                    base, shuffled, 100, 8, args, server.pid
                )
                print(json.dumps(report["concurrent_writers_random_100"]), flush=True)
                report["purchase_to_recommendation"] = purchase_to_recommendation(
                    base, probes.tolist()
                )
                print(json.dumps(report["purchase_to_recommendation"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
