"""``serving.server``: the loopback guard of ``run``, the workers' app factory, ``--workers``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servingkit import READ, READ_KEY, TestClient, metric

from feature_store.embedded import free_port
from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError
from serving.server import app_factory, run


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_run_refuses_a_public_address_without_api_keys(host: str) -> None:
    with pytest.raises(InvalidRequestError, match="without API keys"):
        run(Settings(), host=host, port=free_port())


def test_the_worker_factory_builds_the_app_from_environment_settings(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str, artifacts: Path
) -> None:
    """What each of several uvicorn workers runs (``serving.server:app_factory``)."""
    monkeypatch.setenv("RECSYS_REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("RECSYS_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("RECSYS_API_KEYS", f"{READ_KEY}:read")
    get_settings.cache_clear()
    try:
        with TestClient(app_factory()) as client:
            response = client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
            assert response.json()["strategy"] == "personalized"
            assert client.get("/v1/popular").status_code == 401
    finally:
        get_settings.cache_clear()


def test_recsys_serve_runs_several_workers_on_uvloop_and_httptools(
    tmp_path: Path, redis_url: str, redis_prefix: str, artifacts: Path
) -> None:
    """``recsys serve --workers 2``, as an operator starts it: each worker listens on a socket
    of its own (``SO_REUSEPORT``: the kernel spreads connections evenly), both answer, and
    ``/metrics`` sums both (multiprocess mode) and has each worker's process metrics."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
        OPENBLAS_NUM_THREADS="1",
        RECSYS_REDIS_URL=redis_url,
        RECSYS_REDIS_PREFIX=redis_prefix,
        RECSYS_API_KEYS=f"{READ_KEY}:read",
        RECSYS_SERVING__KEEP_ALIVE_S="1",
    )
    command = [sys.executable, "-m", "pelanggan.cli", "serve", "--workers", "2",
               "--port", str(port), "--artifacts", str(artifacts)]  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        workers: set[str] = set()
        deadline = time.monotonic() + 60
        while len(workers) < 2 or not _ready(base):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
            workers = set(re.findall(r"process (\d+) serving on the uvloop", log_path.read_text()))
        for _ in range(10):  # a connection each: the kernel spreads them over the workers
            response = httpx.get(f"{base}{RECS}", headers=READ, timeout=10)
            assert response.json()["strategy"] == "personalized"
        assert "2 worker(s), uvloop loop, httptools parser" in log_path.read_text()
        assert listening_sockets(port) == 2  # one per worker, not one shared
        assert idle_connection_closed_after(port, 1.6)  # serving.keep_alive_s, not uvicorn's 5 s
        for _ in range(4):  # whichever worker answers the scrape speaks for both
            text = httpx.get(f"{base}/metrics", timeout=10).text
            route = "/v1/customers/{customer_id}/recommendations"
            labels = {"route": route, "method": "GET", "status": "200"}
            assert metric(text, "recsys_http_requests_total", **labels) == 10
            memory = {
                pid: metric(text, "process_resident_memory_bytes", pid=pid) for pid in workers
            }
            assert all(value and value > 10_000_000 for value in memory.values()), memory
    finally:
        process.terminate()
        process.wait(30)


RECS = "/v1/customers/kitchen-1/recommendations"


def idle_connection_closed_after(port: int, seconds: float) -> bool:
    """A keep-alive connection left idle for ``seconds`` after one request was closed by the
    server (it reads as end of file)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(seconds)
        sock.settimeout(0.5)
        try:
            while sock.recv(65536):  # the rest of the response, then end of file
                pass
        except TimeoutError:
            return False  # still open
        return True


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (Linux ``/proc/net/tcp``: state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
