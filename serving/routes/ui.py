"""``GET /ui``: the customer-360 page for the people who work with customers.

Plain HTML, CSS and a little JavaScript from ``serving/ui/`` (package data; no build step, no
CDN): the page calls the service's own JSON API with ``fetch`` (profile, recommendations,
offers, next best action, ``/v1/overview`` and ``/v1/model``), so it shows exactly what the API
answers. Its files need the **read** scope like every read route: with no API keys configured
they are loopback-only; with keys, put the page behind a proxy that adds ``X-API-Key`` (the
browser's own requests carry no key). The content security policy allows nothing but this
origin, so the page cannot load anything from elsewhere.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from recsys.errors import NotFoundError
from serving.auth import Principal, require

router = APIRouter(tags=["ui"], include_in_schema=False)

_UI = files("serving") / "ui"
#: The page's files and their media types (nothing else under /ui is served).
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
ReadKey = Annotated[Principal, Depends(require("read"))]


@functools.cache
def _read(name: str) -> bytes:
    return (_UI / name).read_bytes()


def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError("page file", name)
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)


@router.get("/ui")
async def page(_: ReadKey) -> Response:
    """The customer-360 page (``?customer=ID`` looks the customer up on load)."""
    return asset("index.html")


@router.get("/ui/{name}")
async def page_file(name: str, _: ReadKey) -> Response:
    """The page's script and style sheet."""
    return asset(name)
