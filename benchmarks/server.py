"""Start ``recsys serve`` as a child process on a free loopback port, for benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(
    artifacts: Path, *, workers: int = 1, env: dict[str, str] | None = None, timeout_s: float = 120
) -> Iterator[str]:
    """Yield the base URL of a ready server over ``artifacts``; stop it afterwards."""
    with served(artifacts, workers=workers, env=env, timeout_s=timeout_s) as (base, _):
        yield base


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of process ``pid`` and its descendants but Redis (an embedded
    ``redis-server`` holds the data, not the service): Linux ``/proc``, 0 elsewhere."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{current}/comm") as comm:
                is_redis = comm.read().startswith("redis")
            with open(f"/proc/{current}/statm") as statm:
                pages = 0 if is_redis else int(statm.read().split()[1])
                total += pages * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo += [int(child) for child in children.read().split()]
    return total


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants: the
    service's processes, and Redis's apart (Linux ``/proc``; zeros elsewhere). On a shared
    machine, customers per CPU second of the service is the figure other load moves least."""
    service = redis = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{current}/stat") as stat:
                text = stat.read()
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            used = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            if name.startswith("redis"):
                redis += used
            else:
                service += used
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo += [int(child) for child in children.read().split()]
    return service, redis


@contextlib.contextmanager
def served(
    artifacts: Path, *, workers: int = 1, env: dict[str, str] | None = None, timeout_s: float = 120
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`serving` that also yields the server process (to watch its memory)."""
    port = _free_port()
    child_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    command = [
        sys.executable, "-m", "pelanggan.cli", "serve", "--artifacts", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=child_env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"recsys serve exited with code {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("recsys serve did not become ready in time")
            time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
