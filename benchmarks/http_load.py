"""A small closed-loop HTTP load generator for the benchmarks (loopback only, bounded).

``run_load(base_url, make_request, concurrency, total)`` keeps ``concurrency`` requests in
flight over keep-alive connections (a lean asyncio HTTP/1.1 client) until ``total`` have
completed, and returns the latency percentiles and the throughput measured at the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import orjson

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


class _Connection:
    """One keep-alive HTTP/1.1 connection over asyncio streams: a lean client, so that the
    load generator costs less CPU than the server it measures (httpx costs several times more
    per request, and on a 2-core machine the client would be what is measured)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object | None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = orjson.dumps(body) if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
        if chunked:
            while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


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
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def worker() -> None:
        connection = _Connection(host, port, headers)
        try:
            for i in counter:
                method, path, body = make_request(i)
                start = time.perf_counter()
                try:
                    statuses[i] = await asyncio.wait_for(
                        connection.request(method, path, body), timeout_s
                    )
                except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    statuses[i] = 0
                    await connection.close()
                    connection = _Connection(host, port, headers)
                latencies[i] = time.perf_counter() - start
        finally:
            await connection.close()

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
