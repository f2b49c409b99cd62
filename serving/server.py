"""Running the service with uvicorn (``recsys serve`` calls :func:`run`).

With one worker the app is built here from the given settings; with several, uvicorn imports
:func:`app_factory` in each worker process, which reads the settings from the environment (the
CLI exports ``RECSYS_ARTIFACTS`` and ``RECSYS_REDIS_URL`` for them).

uvicorn's access log is off: it prints raw paths, which hold customer ids. The service logs its
own access lines with the route template instead (``serving.middleware``). uvicorn's default
proxy-header handling stays on: it trusts ``X-Forwarded-For`` from 127.0.0.1 only, so behind a
local reverse proxy the loopback-only mode (no API keys) sees the real, remote client.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError
from serving.app import create_app
from serving.auth import is_loopback


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
    if workers > 1:
        uvicorn.run(
            "serving.server:app_factory",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            access_log=False,
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=False)
