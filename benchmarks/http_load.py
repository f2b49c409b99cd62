"""A small closed-loop HTTP load generator for the benchmarks (loopback only, bounded).

``run_load(base_url, make_request, concurrency, total)`` keeps ``concurrency`` requests in
flight over keep-alive connections until ``total`` have completed, and returns the latency
percentiles and the throughput measured at the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import numpy as np

RequestSpec = tuple[str, str, object | None]  # method, path, JSON body


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_counts: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self, label: str) -> str:
        return (
            f"{label:<40} {self.requests:>7} req  {self.rps:>8.0f} req/s  "
            f"p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
            f"max {self.max_ms:6.1f} ms  errors {self.errors}"
        )


def _check_loopback(base_url: str) -> None:
    host = urlsplit(base_url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"benchmarks send traffic to loopback only, not {host!r}")


async def _run(
    base_url: str,
    make_request: Callable[[int], RequestSpec],
    concurrency: int,
    total: int,
    headers: dict[str, str],
    timeout_s: float,
) -> LoadResult:
    latencies = np.zeros(total, dtype=np.float64)
    statuses = np.zeros(total, dtype=np.int32)
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=timeout_s
    ) as client:

        async def worker() -> None:
            for i in counter:
                method, path, body = make_request(i)
                start = time.perf_counter()
                try:
                    response = await client.request(method, path, json=body)
                    statuses[i] = response.status_code
                except httpx.HTTPError:
                    statuses[i] = 0
                latencies[i] = time.perf_counter() - start

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = latencies * 1000.0
    codes, counts = np.unique(statuses, return_counts=True)
    return LoadResult(
        requests=total,
        errors=int(np.count_nonzero((statuses == 0) | (statuses >= 500))),
        seconds=elapsed,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        max_ms=float(ms.max()),
        status_counts={int(c): int(n) for c, n in zip(codes, counts, strict=True)},
    )


def run_load(
    base_url: str,
    make_request: Callable[[int], RequestSpec],
    *,
    concurrency: int = 8,
    total: int = 5000,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    _check_loopback(base_url)
    return asyncio.run(_run(base_url, make_request, concurrency, total, headers or {}, timeout_s))
