"""The embedded redis-server: starts on a free port, uses its data directory, stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from feature_store.embedded import EmbeddedRedis
from recsys.errors import StoreUnavailableError


def test_url_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="not started"):
        _ = EmbeddedRedis(tmp_path).url


def test_starts_answers_writes_its_data_dir_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis-data"
    server = EmbeddedRedis(data_dir, persist=True).start()
    try:
        assert server.running
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("k", "v")
        client.close()
        assert (data_dir / "redis.log").is_file()
        assert any(p.name.startswith("appendonly") for p in data_dir.iterdir())
    finally:
        server.stop()
    assert not server.running
    server.stop()  # a second stop is harmless


def test_persisted_data_survives_a_restart_in_the_same_dir(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persist=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("survives", "yes")
        client.close()
    with EmbeddedRedis(tmp_path, persist=True) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("survives") == b"yes"
        client.close()


def test_a_stopped_server_refuses_connections(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persist=False) as server:
        url = server.url
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    client.close()


def test_the_embedded_server_stops_when_its_owner_process_is_killed(tmp_path: Path) -> None:
    """A parent killed by a signal runs no ``finally``: the server must not outlive it."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from feature_store.embedded import EmbeddedRedis\n"
        f"server = EmbeddedRedis({str(tmp_path)!r}, persist=False).start()\n"
        "print(server.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    port = int(owner.stdout.readline())
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    assert client.ping()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
        except redis.exceptions.ConnectionError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("redis-server outlived the process that started it")
    client.close()
