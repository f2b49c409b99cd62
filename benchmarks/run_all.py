"""``make bench``: every benchmark in turn, each in its own process, figures to stdout.

A benchmark that fails is reported and the others still run; the exit code is non-zero if any
failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = (
    "benchmarks.quality",
    "benchmarks.latency",
    "benchmarks.store_bench",
    "benchmarks.events_bench",
    "benchmarks.offers_bench",
)


def main() -> int:
    failed = []
    for n, module in enumerate(BENCHMARKS, 1):  # one line per step: the figures stay readable
        print(f"\n=== [{n}/{len(BENCHMARKS)}] {module}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module])
        print(f"=== {module}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
