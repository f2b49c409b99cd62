"""The page view against the framework floor, in one run and one process tree.

    python -m benchmarks.floor [--artifacts DIR] [--workers 2] [--seconds 10] [--connections 8 64]
                               [--runs 1] [--answer-cache-ttl S]

Starts, side by side and with the same uvicorn settings (workers on sockets of their own,
uvloop, httptools, no access log), a bare FastAPI app whose one route returns a fixed 10-item
body (:mod:`benchmarks.bare_app`) and ``recsys serve`` over a trained root (the shared data's
model unless ``--artifacts`` names one; embedded Redis unless ``RECSYS_REDIS_URL`` is set). Each
is loaded in turn at each connection count with the same generator, requesting
``/v1/customers/<id>/recommendations?k=10`` for rotating real customer ids. Prints requests per
second, p50 and p99 for both, the ratio of throughputs, the CPU microseconds per request of each
server's processes (and of Redis, apart, when it is a child of ours: the figure a shared
machine's load distorts least), and the number of ``fallback`` answers of ours (counted by the
wrk script in the bodies; it must stay 0 with Redis healthy). ``--runs`` repeats the whole sweep
on the same servers.

The answer cache (``serving.answer_cache``) is on by default: the customers rotate, so every
customer's first view is a miss (ranked, then stored) and the later ones hit; the warm-up load
(``--seconds`` at 8 connections) goes over the ids more than once on most machines, so the
measured runs are mostly hits. ``--answer-cache-ttl 0`` serves with it off (every view ranked:
the first pass's figure, less the write-back).

The generator is ``wrk`` when it is on PATH (``apt-get install wrk``: C, one thread, little CPU
taken from the servers), else the project's asyncio client (``benchmarks.http_load``), which
costs more CPU and so lowers both figures. On a 2-core machine the generator shares the cores
with the servers: read the ratio, and the absolute figures as that machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.http_load import run_load
from benchmarks.latency import trained_root
from benchmarks.server import _free_port, served, tree_cpu_seconds
from recsys.bundle import latest_version_dir, read_bundle


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    fallbacks: int  # answers with "strategy": "fallback" (-1: not counted)
    requests: int = 0
    cpu_us: float = 0.0  # CPU of the server's processes per request (Redis's apart)
    redis_cpu_us: float = 0.0

    def cell(self) -> str:
        cpu = f"  CPU {self.cpu_us:4.0f} µs/req"
        if self.redis_cpu_us:
            cpu += f" + Redis {self.redis_cpu_us:3.0f}"
        return f"{self.rps:>8,.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms{cpu}"


def with_cpu(figures: Figures, before: tuple[float, float], after: tuple[float, float]) -> Figures:
    """``figures`` with the CPU microseconds per request that the server's process tree used
    between ``before`` and ``after`` (:func:`benchmarks.server.tree_cpu_seconds`): the figure a
    shared machine's load distorts least."""
    n = max(figures.requests, 1)
    service, redis = (after[0] - before[0]) / n * 1e6, (after[1] - before[1]) / n * 1e6
    return dataclasses.replace(figures, cpu_us=service, redis_cpu_us=redis)


@contextlib.contextmanager
def bare_server(workers: int) -> Iterator[tuple[str, int]]:
    """The bare app under uvicorn with the service's options; yields its base URL and pid."""
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.bare_app", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    process = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare app did not start")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


_WRK_SCRIPT = """
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
local i = 0
fallbacks = 0
request = function()
  i = i %% #ids + 1
  return wrk.format("GET", "/v1/customers/" .. ids[i] .. "/recommendations?k=10")
end
response = function(status, headers, body)
  if string.find(body, '"strategy":"fallback"', 1, true) then fallbacks = fallbacks + 1 end
end
done = function(summary, latency, requests)
  local fell = 0
  for _, thread in ipairs(threads) do fell = fell + thread:get("fallbacks") end
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%.3f %%d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, fell))
end
"""


def load_with_wrk(base: str, ids_file: Path, connections: int, seconds: float) -> Figures:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % ids_file)
    try:
        duration = f"-d{max(1, round(seconds))}s"
        command = ["wrk", "-t1", f"-c{connections}", duration, "-s", script.name, base]
        out = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 30
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, errors, elapsed = int(match[1]), int(match[2]), float(match[3])
    return Figures(
        requests / elapsed, float(match[4]), float(match[5]), errors, int(match[6]), requests
    )


def load_with_python(base: str, ids: list[str], connections: int, seconds: float) -> Figures:
    rng = random.Random(7)
    total = int(connections * seconds * 100)

    def make(_: int) -> tuple[str, str, None]:
        return "GET", f"/v1/customers/{rng.choice(ids)}/recommendations?k=10", None

    result = run_load(base, make, concurrency=connections, total=total)
    return Figures(result.rps, result.p50_ms, result.p99_ms, result.errors, -1, result.requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=None, help="a trained artifacts root")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of both servers")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--runs", type=int, default=1, help="sweeps over the connection counts")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--answer-cache-ttl", type=int, default=None, help="serving.answer_cache_ttl_s (0: off)"
    )
    args = parser.parse_args(argv)

    root = trained_root(args.artifacts)
    ids = [str(c) for c in read_bundle(latest_version_dir(root)).customer_ids]
    random.Random(7).shuffle(ids)
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        ids_file = Path(work) / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")

        def load(server: tuple[str, int], connections: int) -> Figures:
            base, pid = server
            before = tree_cpu_seconds(pid)
            if use_wrk:
                figures = load_with_wrk(base, ids_file, connections, args.seconds)
            else:
                figures = load_with_python(base, ids, connections, args.seconds)
            return with_cpu(figures, before, tree_cpu_seconds(pid))

        rows = []
        env = {"RECSYS_SERVING__ACCESS_LOG_SAMPLE": "0"}
        if args.answer_cache_ttl is not None:
            env["RECSYS_SERVING__ANSWER_CACHE_TTL_S"] = str(args.answer_cache_ttl)
        with (
            bare_server(args.workers) as bare,
            served(root, workers=args.workers, env=env) as (our_base, process),
        ):
            ours = (our_base, process.pid)
            for base in (bare, ours):
                load(base, 8)  # warm-up: connections, caches, the first reads
            for _, connections in itertools.product(range(args.runs), args.connections):
                rows.append((connections, load(bare, connections), load(ours, connections)))
    ttl = "default" if args.answer_cache_ttl is None else f"{args.answer_cache_ttl} s"
    generator = "wrk (1 thread)" if use_wrk else "benchmarks.http_load (asyncio)"
    print(f"{args.workers} workers each, {os.cpu_count()} CPUs, generator {generator}, "
          f"{args.seconds:.0f} s per run, {len(ids):,} rotating customer ids, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"answer cache ttl {ttl}")  # fmt: skip
    for connections, bare_figures, our_figures in rows:
        ratio = our_figures.rps / bare_figures.rps if bare_figures.rps else 0.0
        print(f"{connections:>3} connections  bare   {bare_figures.cell()}")
        print(f"{'':>3}              ours   {our_figures.cell()}   ratio {ratio:.2f}")
        if bare_figures.errors or our_figures.errors:
            print(f"{'':>17}errors: bare {bare_figures.errors}, ours {our_figures.errors}")
    if use_wrk:
        fell = sum(figures.fallbacks for _, _, figures in rows)
        answered = sum(figures.requests for _, _, figures in rows)
        print(f"fallback answers of ours: {fell:,} of {answered:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
