"""Recommendation endpoint latency and throughput, served with the shared data's model.

    python -m benchmarks.latency [--artifacts DIR] [--requests N] [--concurrency C]

Trains on ``../shared/data/online_retail_2010-12_2011-08.csv.gz`` into ``bench-results/``
unless ``--artifacts`` names a trained root, starts ``recsys serve`` on a free loopback port
(embedded Redis unless ``RECSYS_REDIS_URL`` is set), and measures at the client, after a
warm-up, the page-view endpoints. Prints one line per scenario.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from benchmarks.http_load import RequestSpec, run_load
from benchmarks.server import serving
from recsys.bundle import latest_version_dir, read_bundle
from recsys.errors import ModelUnavailableError

SHARED = Path(__file__).resolve().parents[2] / "shared/data/online_retail_2010-12_2011-08.csv.gz"


def trained_root(artifacts: Path | None) -> Path:
    if artifacts is not None:
        return artifacts
    root = Path("bench-results/artifacts")
    try:
        latest_version_dir(root)
    except ModelUnavailableError:
        from training.pipeline import train_bundle

        train_bundle(SHARED, root)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    root = trained_root(args.artifacts)
    bundle = read_bundle(latest_version_dir(root))
    rng = random.Random(7)
    customers = [str(c) for c in bundle.customer_ids]
    items = [str(bundle.items.item_ids[r]) for r in bundle.popular[:500]]

    def home(i: int) -> RequestSpec:
        return "GET", f"/v1/customers/{rng.choice(customers)}/recommendations?k=10", None

    def product(i: int) -> RequestSpec:
        c, it = rng.choice(customers), rng.choice(items)
        return "GET", f"/v1/customers/{c}/recommendations?k=10&context=product&item_id={it}", None

    def repeat(i: int) -> RequestSpec:
        c = rng.choice(customers)
        return "GET", f"/v1/customers/{c}/recommendations?k=20&exclude_purchased=false", None

    def cold(i: int) -> RequestSpec:
        return "GET", f"/v1/customers/new-{i}/recommendations?k=10", None

    def similar(i: int) -> RequestSpec:
        return "GET", f"/v1/items/{rng.choice(items)}/similar?k=10", None

    scenarios = {
        "recommendations home (known customers)": home,
        "recommendations product page": product,
        "recommendations buy-again (email)": repeat,
        "recommendations cold start": cold,
        "similar items": similar,
    }
    print(
        f"model {bundle.version}: {len(customers):,} customers, {len(bundle.items):,} items, "
        f"{bundle.item_factors.shape[1]} factors; workers={args.workers}, "
        f"concurrency={args.concurrency}"
    )
    with serving(root, workers=args.workers) as base:
        run_load(base, home, concurrency=args.concurrency, total=2000)  # warm-up
        for label, make in scenarios.items():
            result = run_load(base, make, concurrency=args.concurrency, total=args.requests)
            print(result.line(label), flush=True)
            bad = {k: v for k, v in result.status_counts.items() if k != 200}
            if bad:
                print(f"  non-200 answers: {bad}")


if __name__ == "__main__":
    main()
