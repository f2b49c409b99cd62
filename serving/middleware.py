"""Request context: ``X-Request-ID``, timing into metrics, a redacted access log, last-resort 500.

A plain ASGI middleware (cheaper than ``BaseHTTPMiddleware``). It

* takes a well-formed incoming ``X-Request-ID`` or makes one (32 hex digits: a random prefix
  drawn once per process and a counter, unique like a UUID4 at a tenth of its cost), stores it
  in ``request.state`` and puts it on every response, errors included;
* observes the latency and status under the matched route *template*, so no customer id reaches
  the metrics or the log (uvicorn's own access log, which prints raw paths, is switched off in
  ``serving.server``); the access log is sampled (``serving.access_log_sample``, off by
  default: at thousands of page views a second a line each costs as much as the scoring);
* turns an exception that escaped every handler into a 500 problem+json that leaks nothing,
  logging the traceback with the request id.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import internal_error_response, too_large_response
from serving.metrics import UNMATCHED_ROUTE, Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode("latin-1")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

access_log = logging.getLogger("recsys.access")
error_log = logging.getLogger("recsys.errors")


class _RequestIds:
    """New request ids: 16 random hex digits drawn per process (again in a forked child), then
    a 16-digit counter."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_new_ids = _RequestIds()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's request id when it is well formed (<= 128 safe characters), else a new one."""
    for name, value in headers:
        if name == _HEADER_BYTES:
            text = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(text):
                return text
            break
    return _new_ids.next()


def route_template(scope: Scope) -> str:
    """``/v1/customers/{customer_id}/recommendations``, never the raw path."""
    route: Any = scope.get("route")
    if route is None:  # Starlette routes and mounts (the docs) do not put themselves in scope
        route = _route_of_endpoint(scope)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def _route_of_endpoint(scope: Scope) -> Any:
    """The app's route or mount that matched (``scope["endpoint"]``), or None."""
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    for route in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint:
            return route
    return None


class RequestContextMiddleware:
    """``access_log_sample``: the share of requests below 500 that get an access-log line
    (every ``round(1 / share)``-th one: no random draw on the hot path); 5xx always do."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log_sample: float = 0.0) -> None:
        self.app = app
        self.metrics = metrics
        self._log_every = round(1 / access_log_sample) if access_log_sample > 0 else 0
        self._until_log = 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        header = (_HEADER_BYTES, request_id.encode("latin-1"))
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception(
                "unhandled error on %s %s (request %s)",
                scope["method"],
                route_template(scope),
                request_id,
            )
            if response_started:
                raise
            status = 500
            await internal_error_response(scope["path"], request_id)(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = route_template(scope)
        self.metrics.observe_request(route, scope["method"], status, seconds)
        if status < 500:
            if not self._log_every:
                return
            self._until_log -= 1
            if self._until_log:
                return
            self._until_log = self._log_every
        access_log.info(
            "%s %s %d %.2fms request_id=%s key=%s",
            scope["method"],
            route,
            status,
            seconds * 1000.0,
            request_id,
            scope.get("state", {}).get("key_id") or "-",
        )


class BodyLimitMiddleware:
    """Request bodies of at most ``max_bytes`` (``serving.max_body_bytes``): a larger one gets a
    413 problem+json before any route sees it. A declared ``Content-Length`` over the limit is
    refused unread; a body without one (chunked) is read up to the limit, then refused, so
    memory per request stays bounded either way. What is within the limit is handed on as it
    was received."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope.get("headers", []))
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id")
        response = too_large_response(scope["path"], request_id, self.max_bytes)
        await response(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
