"""Hot routes answered before Starlette's routing: an ASGI middleware for one route.

``GET /v1/customers/{customer_id}/recommendations`` is the call the website makes on every page
view. Its lean path (``serving.routes.recommendations.lean_recommendations``) already skips
FastAPI's dependency solving; this middleware also skips what lies between the request-context
middleware and the route: the exception middleware, the router's walk over every route and the
endpoint wrapper. It sits inside :class:`~serving.middleware.RequestContextMiddleware` (request
id, metrics, access log) and hands the request to the lean path directly; what the lean path
does not answer (a malformed or unusual request: it returns None) goes on to the application
unchanged, so validation errors, the OpenAPI schema and every other route are FastAPI's as
before. The errors the lean path raises (401, 403) become problem+json through the one error
map (:func:`serving.errors.recsys_error_response`). ``POST /v1/events`` goes the same way
(``serving.routes.events.lean_events``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.errors import RecsysError
from serving.errors import recsys_error_response

LeanHandler = Callable[[Request], Awaitable[Response | None]]


class FastPath:
    """Route ``method`` requests (``GET`` by default) whose path matches ``pattern`` (one named
    group per path parameter) to ``handler`` before the router; ``template`` names the route
    for metrics. A request with a body (``POST``) has it read first; when the handler declines,
    the application gets the body again, unchanged."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        pattern: str,
        template: str,
        handler: LeanHandler,
        routes: Any,
        method: str = "GET",
    ) -> None:
        self.app = app
        self.method = method
        self.pattern = re.compile(pattern)
        self.handler = handler
        self.template = template
        self._routes = routes  # the application's routes: the declared route is found lazily
        self._route: Any = None

    def _declared_route(self) -> Any:
        if self._route is None:
            self._route = next(r for r in self._routes if getattr(r, "path", None) == self.template)
        return self._route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == self.method:
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            match = self.pattern.fullmatch(path)
            if match is not None:
                scope["path_params"] = match.groupdict()
                scope["route"] = self._declared_route()  # the template, for metrics and logs
                request = Request(scope, receive)
                body = await request.body() if self.method != "GET" else None
                try:
                    response = await self.handler(request)
                except RecsysError as exc:
                    response = recsys_error_response(request, exc)
                if response is not None:
                    await response(scope, receive, send)
                    return
                if body is not None:
                    receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the application a body already read, then is ``receive``
    (what comes after the body: the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
