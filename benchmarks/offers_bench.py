"""Campaign throughput: customers per second through the offers batch and the offers export.

    python -m benchmarks.offers_bench [--artifacts DIR] [--rounds 3] [--channel email]
        [--workers 2] [--clients 4] [--export-artifacts DIR ...]

Trains on ``../shared/data/online_retail_2010-12_2011-08.csv.gz`` into ``bench-results/``
unless ``--artifacts`` names a trained root, starts ``recsys serve`` (a real uvicorn server,
``--workers`` processes, 2 by default) on a free loopback port (embedded Redis unless
``RECSYS_REDIS_URL`` is set) and measures at the client:

1. ``POST /v1/offers/batch`` with batches of 1,000 customer ids (every customer of the model,
   ``--rounds`` times over, shuffled), ``--clients`` requests in flight over keep-alive
   connections (``benchmarks.http_load``: a lean asyncio client, so that the client costs
   little of the shared cores): customers/s, the latency of one batch, and the CPU time the
   service's processes and Redis spent a customer (``/proc``: the figure that other load on a
   shared machine moves least);
2. ``GET /v1/offers/export`` streamed to the end (every customer of the base is read and
   decided; the lines are those with consent and an offer), with the server's resident memory
   (its processes, Redis left out) sampled while it streams: the peak over the level before;
   ``--export-artifacts`` adds one such export per trained root (e.g. a 5k and a 50k
   customer synthetic shop, one server with one worker each) to show the memory stays flat
   whatever the base's size;
3. in process, what the batch's costly step costs: recommended items for the customers whose
   offers need items, one by one through the hot path's ``recommend``, all together through
   ``recommended_items_many`` (what the batch and the export use: the same items), and, as a
   floor, one BLAS matrix product for the whole batch (cf only, no blend, no top k).

The load generator, the server and Redis share the machine's cores: the figures are those of
the whole box, not of the server alone. ``RECSYS_SERVING__RANKER_EVALUATOR=onnx`` (or
``native``, the default) chooses how the learned rankers run, in the server and in step 3.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.http_load import LoadResult, RequestSpec, run_load  # noqa: E402
from benchmarks.latency import trained_root  # noqa: E402
from benchmarks.server import served, tree_cpu_seconds, tree_rss_bytes  # noqa: E402
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


def run_batches(base: str, work: list[list[str]], channel: str, clients: int) -> LoadResult:
    """Every batch of ``work`` posted once, ``clients`` requests in flight."""

    def request(i: int) -> RequestSpec:
        return "POST", "/v1/offers/batch", {"customer_ids": work[i], "channel": channel}

    result = run_load(base, request, concurrency=clients, total=len(work), timeout_s=60)
    if result.errors or set(result.status_counts) != {200}:
        raise RuntimeError(f"offers batch answered {result.status_counts}")
    return result


def run_export(base: str, channel: str, pid: int | None = None) -> tuple[int, int, float, int]:
    """Lines, bytes and seconds of one whole export, and the peak growth of the server's
    resident memory while it streamed (sampled every 20 ms; 0 without ``pid``)."""
    baseline = tree_rss_bytes(pid) if pid else 0
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], tree_rss_bytes(pid) if pid else 0)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    lines = size = 0
    try:
        with httpx.Client(base_url=base, timeout=600) as http:
            with http.stream("GET", "/v1/offers/export", params={"channel": channel}) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line:
                        lines += 1
                        size += len(line) + 1
    finally:
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
    return lines, size, seconds, peak[0] - baseline


def export_line(label: str, customers: int, export: tuple[int, int, float, int]) -> str:
    lines, size, seconds, grown = export
    return (
        f"{label:<40} {customers:>8,} customers in {seconds:6.2f} s  "
        f"{customers / seconds:>9,.0f} customers/s  {lines:,} lines ({size / 1e6:.1f} MB); "
        f"server memory +{grown / 2**20:.1f} MiB while streaming"
    )


def export_memory(root: Path, channel: str) -> str:
    """One server (one worker) over ``root``: an export after a warm-up one, as a line."""
    n = len(read_bundle(latest_version_dir(root)).customer_ids)
    with served(root, workers=1) as (base, process):
        run_export(base, channel)  # warm-up: the first export's one-off allocations
        return export_line(f"offers export, {root}", n, run_export(base, channel, process.pid))


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
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--export-artifacts", type=Path, nargs="*", default=[])
    args = parser.parse_args()

    root = trained_root(args.artifacts)
    bundle = read_bundle(latest_version_dir(root))
    customers = [str(c) for c in bundle.customer_ids]
    work = batches(customers, args.rounds)
    n_offers = len(bundle.extra.get("offers", {}).get("offers", []))
    print(
        f"model {bundle.version}: {len(customers):,} customers, {len(bundle.items):,} items, "
        f"{bundle.item_factors.shape[1]} factors; {n_offers} offers in the bundle's catalogue "
        f"(0: the default one); workers={args.workers}, channel={args.channel}; "
        f"{os.cpu_count()} cores shared by the server, Redis and the load generator"
    )
    del bundle
    with served(root, workers=args.workers) as (base, process):
        for clients in sorted({1, args.clients}):
            run_batches(base, work[: 2 * clients], args.channel, clients)  # warm-up
            service_before, redis_before = tree_cpu_seconds(process.pid)
            result = run_batches(base, work, args.channel, clients)
            service, redis = tree_cpu_seconds(process.pid)
            done = sum(len(ids) for ids in work)
            print(
                f"offers batch ({BATCH:,} ids, {clients} in flight)  {done:>8,} customers "
                f"in {result.seconds:6.2f} s  {done / result.seconds:>9,.0f} customers/s  "
                f"batch p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms; "
                f"{(service - service_before) / done * 1e6:5.0f} us service CPU and "
                f"{(redis - redis_before) / done * 1e6:4.0f} us Redis CPU a customer",
                flush=True,
            )
        run_export(base, args.channel)  # warm-up
        print(export_line("offers export (NDJSON stream)", len(customers),
                          run_export(base, args.channel, process.pid)), flush=True)  # fmt: skip
    for extra in args.export_artifacts:
        print(export_memory(trained_root(extra), args.channel), flush=True)
    per_customer, together, blas = item_costs(root)
    print(
        f"recommended items for offers: hot-path recommend {per_customer:7.1f} us/customer; "
        f"recommended_items_many {together:6.1f} us/customer (the same items); "
        f"one BLAS product for the batch {blas:6.1f} us/customer (cf only, no blend)"
    )


if __name__ == "__main__":
    main()
