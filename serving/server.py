"""Running the service with uvicorn (``recsys serve`` calls :func:`run`).

With one worker the app is built here from the given settings; with several, uvicorn imports
:func:`app_factory` in each worker process, which reads the settings from the environment (the
CLI exports ``RECSYS_ARTIFACTS`` and ``RECSYS_REDIS_URL`` for them), and the metrics are kept in
``PROMETHEUS_MULTIPROC_DIR`` (set here when absent) so that ``/metrics`` sums all workers.

Several workers each listen on a socket of their own bound to the same port (``SO_REUSEPORT``,
``settings.serving.reuse_port``), so the kernel spreads connections evenly over them; uvicorn's
supervisor (health checks, restarts, signals) runs them as usual, with
:class:`~serving.listen.ReusePortSocket` in place of its one shared socket.

uvicorn's access log is off: it prints raw paths, which hold customer ids. The service logs its
own access lines with the route template instead (``serving.middleware``). uvicorn's default
proxy-header handling stays on: it trusts ``X-Forwarded-For`` from 127.0.0.1 only, so behind a
local reverse proxy the loopback-only mode (no API keys) sees the real, remote client.
"""

from __future__ import annotations

import copy
import logging
from importlib.util import find_spec
from typing import Any

import uvicorn
import uvicorn.config
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError
from serving.app import create_app
from serving.auth import is_loopback
from serving.listen import ReusePortSocket, bind_reuse_port, reuse_port_supported
from serving.metrics import workers_multiprocess_dir

log = logging.getLogger("recsys.serving")


#: The CLI's log format; worker processes start afresh, so they are configured with it too.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def worker_log_config() -> dict[str, Any]:
    """uvicorn's logging config plus the service's (``recsys.*`` at INFO, the access log
    included) for worker processes, which uvicorn configures and the CLI's setup never reaches."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["recsys"] = {"format": LOG_FORMAT}
    config["handlers"]["recsys"] = {
        "formatter": "recsys",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["recsys"], "level": "INFO"}
    return config


def event_loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools (``uvicorn[standard]``) when installed, else asyncio and h11:
    what uvicorn's ``auto`` picks, named here so that the log says which one runs."""
    loop = "uvloop" if find_spec("uvloop") is not None else "asyncio"
    http = "httptools" if find_spec("httptools") is not None else "h11"
    return loop, http


def app_factory() -> FastAPI:
    """The app of one worker process, from ``RECSYS_*`` environment settings."""
    return create_app(get_settings())


def run(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> None:
    """Serve until interrupted; refuses a non-loopback address when no API keys are set."""
    host = host or settings.host
    port = port if port is not None else settings.port
    workers = workers or settings.workers
    if not settings.api_keys and not (host == "localhost" or is_loopback(host)):
        raise InvalidRequestError(
            f"refusing to serve on {host!r} without API keys: set RECSYS_API_KEYS "
            "or bind a loopback address"
        )
    loop, http = event_loop_and_parser()
    if loop != "uvloop" or http != "httptools":
        log.warning("uvloop or httptools is missing: install uvicorn[standard] for speed")
    log.info("serving on %s:%d: %d worker(s), %s loop, %s parser", host, port, workers, loop, http)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": loop,
        "http": http,
        "ws": "none",
        "timeout_keep_alive": settings.serving.keep_alive_s,
    }
    if workers > 1:
        with workers_multiprocess_dir() as metrics_dir:  # /metrics answers for every worker
            log.info("metrics of the %d workers in %s", workers, metrics_dir)
            run_workers(
                "serving.server:app_factory",
                workers,
                reuse_port=settings.serving.reuse_port,
                factory=True,
                log_config=worker_log_config(),
                **options,
            )
    else:
        uvicorn.run(create_app(settings), access_log=False, **options)


def run_workers(app: str, workers: int, *, reuse_port: bool = True, **options: Any) -> None:
    """uvicorn's supervisor over ``workers`` processes serving ``app`` (an import string;
    ``options``: :class:`uvicorn.Config`'s): with ``reuse_port``, each on a socket of its own
    (the parent keeps one bound, not listening, so the port stays taken and a busy one fails
    here, at once); else on one socket they share (``uvicorn.run``'s way)."""
    config = uvicorn.Config(app, workers=workers, access_log=False, **options)
    host, port = config.host, config.port
    if not (reuse_port and reuse_port_supported(port)):
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    with bind_reuse_port(host, port, config.backlog, listen=False):
        log.info("each worker listens on its own socket (SO_REUSEPORT) on %s:%d", host, port)
        placeholder: Any = ReusePortSocket(host, port, config.backlog)
        Multiprocess(config, sockets=[placeholder]).run()
