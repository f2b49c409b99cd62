"""Listening sockets of the workers: one each, on the same port (``SO_REUSEPORT``).

Kept apart from :mod:`serving.server` and free of heavy imports on purpose: a spawned worker
unpickles its :class:`ReusePortSocket` (so imports this module) before it starts answering the
supervisor's health pings, and a worker that imported the whole service first could miss them
on a loaded machine and be killed as hung.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def bind_reuse_port(host: str, port: int, backlog: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and listening, unless asked
    not to): every worker binds one, and the kernel hashes each new connection to one of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortSocket:
    """Stands in uvicorn's list of listening sockets: pickled to a spawned worker, it arrives as
    that worker's own socket (:func:`bind_reuse_port`), so no two workers share one."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.address = (host, port, backlog)

    def __reduce__(self) -> tuple[Any, tuple[str, int, int]]:
        return bind_reuse_port, self.address


def reuse_port_supported(port: int) -> bool:
    """Linux (whose ``SO_REUSEPORT`` spreads connections over the sockets; macOS's and the
    BSDs' hand them all to one) and a fixed port."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT") and port != 0
