"""Helpers of the feature-store tests: known batch records and redis-servers of a test's own."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from feature_store.embedded import find_redis_server, free_port
from feature_store.embedded_dir import server_version
from recsys.store import BatchRecord


def record(n: int, version: str = "v1") -> BatchRecord:
    rng = np.random.default_rng(n)
    k = n % 5
    return BatchRecord(
        features={"n": n, "version": version, "clv": n * 10.5, "segment": "loyal", "nps": None},
        user_vector=rng.standard_normal(8).astype(np.float32),
        history_items=np.arange(k, dtype=np.int32) * 3,
        history_counts=np.ones(k, dtype=np.float32) * n,
        history_last_days=np.arange(k, dtype=np.float32) + 0.5,
    )


def records(n: int, version: str = "v1") -> list[tuple[str, BatchRecord]]:
    return [(f"c{i}", record(i, version)) for i in range(n)]


def assert_same_batch(got: BatchRecord | None, want: BatchRecord) -> None:
    assert got is not None
    assert got.features == want.features
    assert want.user_vector is not None and got.user_vector is not None
    assert got.user_vector.tobytes() == want.user_vector.tobytes()
    for name in ("history_items", "history_counts", "history_last_days"):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes()
        assert getattr(got, name).dtype == getattr(want, name).dtype


def redis_7_server() -> str:
    """A redis-server of version 7 or later (the shipped one, else PATH's), or skip the test:
    the cluster commands used here (``ADDSLOTSRANGE``, ``--cluster-port``) came with 7.0."""
    for binary in (find_redis_server(), shutil.which("redis-server")):
        if binary and int(server_version(binary).split(".")[0]) >= 7:
            return binary
    pytest.skip("needs a redis-server 7 or later (the shipped one is older; none on PATH)")


def spawn_redis(
    tmp_path: Path, *args: str, binary: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server with extra ``args`` on a free port, answering; the caller stops it."""
    port = free_port()
    process = subprocess.Popen(
        [binary or find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.exceptions.ConnectionError:
            assert process.poll() is None, f"redis-server exited: see {tmp_path}"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    probe.close()
    return process, port


@contextlib.contextmanager
def one_node_cluster(tmp_path: Path) -> Iterator[int]:
    """A Redis Cluster of one node holding every slot; yields its port."""
    process, port = spawn_redis(
        tmp_path,
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-port", str(free_port())),  # the default, port + 10000, may not exist
        binary=redis_7_server(),
    )
    try:
        admin = redis.Redis(port=port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.05)
        admin.close()
        yield port
    finally:
        process.terminate()
        process.wait(10)
