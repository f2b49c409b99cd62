"""CPU of the exact cf scores: one customer's matrix-vector product at a time (the old loop)
against :func:`recsys.ranking.exact_cf.exact_cf_scores` (a block, the items in cached chunks),
and whether they agree bit for bit.

python -m benchmarks.exact_cf_bench [--customers 256]   (run with OPENBLAS_NUM_THREADS=1)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from recsys.ranking.exact_cf import exact_cf_scores

SHAPES = ((20_000, 64), (20_000, 128), (100_000, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=256)
    n = parser.parse_args().customers
    rng = np.random.default_rng(0)
    for n_items, factors in SHAPES:
        items = rng.standard_normal((n_items, factors), dtype=np.float32)
        users = rng.standard_normal((n, factors), dtype=np.float32)
        t = time.process_time()
        reference = np.stack([items @ u for u in users])
        loop = (time.process_time() - t) / n * 1e3
        t = time.process_time()
        blocked = exact_cf_scores(items, users)
        block = (time.process_time() - t) / n * 1e3
        same = np.array_equal(reference, blocked)
        print(
            f"{n_items:>7,} items x {factors:>3}: per customer {loop:.3f} ms CPU, "
            f"blocked {block:.3f} ms CPU ({loop / block:.1f}x), bit for bit: {same}"
        )


if __name__ == "__main__":
    main()
