"""Is a TCP port free to serve on? Standard library only: ``make demo`` runs this file with the
system Python before the virtual environment exists (``python3 pelanggan/ports.py HOST PORT``).

The probe binds the way uvicorn does (``SO_REUSEADDR``), so a port left in ``TIME_WAIT`` by a
server that just stopped counts as free and one with a listener counts as busy.
"""

from __future__ import annotations

import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now; otherwise what a person should read."""
    if not 0 <= port <= 65535:
        return f"port {port} is not a TCP port (0 to 65535)"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in {98, 48, 10048}:  # EADDRINUSE on Linux, macOS, Windows
                return (
                    f"port {port} on {host} is already in use (another server is listening "
                    f"there); stop it or choose another port, e.g. make demo PORT={port + 1} "
                    f"or recsys demo --port {port + 1}"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def require_free_port(host: str, port: int) -> None:
    """Refuse, before anything starts, to serve on a port another process listens on."""
    from recsys.errors import RecsysError  # here: the script form runs without the package

    problem = port_problem(host, port)
    if problem:
        raise RecsysError(problem)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python3 pelanggan/ports.py HOST PORT", file=sys.stderr)
        return 2
    problem = port_problem(argv[0], int(argv[1]))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
