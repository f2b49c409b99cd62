"""The one place where errors become HTTP: RFC 9457 ``application/problem+json``.

Every error body has ``type, title, status, detail`` plus ``instance`` (the request path) and
``request_id``. :class:`recsys.errors.RecsysError` subclasses map to 4xx/503; FastAPI's request
validation errors become 422 with the field errors under ``errors``; routing's 404/405 keep their
status; anything unexpected is a 500 whose detail says nothing about our internals (see
:func:`internal_error_response`, used by ``serving.middleware``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from recsys.errors import (
    ForbiddenError,
    InternalError,
    InvalidEventError,
    InvalidRequestError,
    NotFoundError,
    RecsysError,
    UnauthorizedError,
    UnavailableError,
    UnknownOfferError,
    UnknownValueError,
)

log = logging.getLogger("recsys.errors")

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:pelanggan:problem:"

#: (error class, status, problem type); the first matching class wins, so subclasses go first.
_MAPPING: tuple[tuple[type[RecsysError], int, str], ...] = (
    (NotFoundError, 404, "not-found"),
    (InvalidEventError, 422, "invalid-event"),
    (UnknownValueError, 422, "unknown-value"),
    (UnknownOfferError, 422, "unknown-offer"),
    (InvalidRequestError, 400, "invalid-request"),
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (UnavailableError, 503, "unavailable"),
    (InternalError, 500, "internal"),
)
_TITLES = {422: "Unprocessable Content", 413: "Content Too Large"}  # RFC 9110 names
_HTTP_TYPES = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}


def problem_body(
    status: int,
    detail: str,
    *,
    problem_type: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + problem_type if problem_type else "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    problem_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    body = problem_body(
        status,
        detail,
        problem_type=problem_type,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        extra=extra,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(error: RecsysError) -> tuple[int, str]:
    """The HTTP status and problem type of one of our errors."""
    for cls, status, problem_type in _MAPPING:
        if isinstance(error, cls):
            return status, problem_type
    return 500, "internal"


def internal_error_response(path: str, request_id: str | None) -> Response:
    """A 500 that says nothing about the cause (it is logged, with the request id)."""
    body = problem_body(
        500,
        "an unexpected error occurred; quote the request id when reporting it",
        problem_type="internal",
        instance=path,
        request_id=request_id,
    )
    return Response(body, status_code=500, media_type=PROBLEM_JSON)


def too_large_response(path: str, request_id: str | None, max_bytes: int) -> Response:
    """413: the request body is over ``serving.max_body_bytes`` (nothing of it was used)."""
    body = problem_body(
        413,
        f"the request body is larger than {max_bytes} bytes",
        problem_type="too-large",
        instance=path,
        request_id=request_id,
    )
    return Response(body, status_code=413, media_type=PROBLEM_JSON)


async def _recsys_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RecsysError)
    return recsys_error_response(request, exc)


def recsys_error_response(request: Request, exc: RecsysError) -> Response:
    """The problem+json response for one of our errors (the exception handler's, and the page
    view fast path's, which runs outside the exception middleware)."""
    status, problem_type = status_for(exc)
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = "1"
    if status == 401:
        headers["WWW-Authenticate"] = 'APIKey header="X-API-Key"'
    detail = str(exc) if status != 500 else "an internal invariant was broken"
    if status == 503 and exc.__cause__ is not None:  # the cause (an address, say) stays here
        log.warning(  # the route template, never the path: no customer id in the log
            "%s %s: 503 %s (cause: %s: %s; request %s)",
            request.method,
            getattr(request.scope.get("route"), "path_format", "-"),
            detail,
            type(exc.__cause__).__name__,
            exc.__cause__,
            getattr(request.state, "request_id", None),
        )
    return problem_response(
        request, status, detail, problem_type=problem_type, headers=headers, extra=exc.details()
    )


#: The integers orjson encodes (64-bit); an echoed input outside it is sent as text.
_INT_RANGE = range(-(2**63), 2**64)


def _echo(value: Any) -> str | int | float | bool | None:
    """The part of a rejected input a problem body may echo: a short scalar, always encodable
    (an integer beyond 64 bits as text, NaN and infinities as text), or None (not echoed)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in _INT_RANGE:
            return value
        text = str(value)
        return text if len(text) <= 200 else text[:100] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str) and len(value) <= 200:
        return value
    return None


def _field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors, reduced to JSON-safe fields (``ctx`` may hold exception objects, and
    ``input`` whatever the client sent: see :func:`_echo`)."""
    reshaped = []
    for error in errors:
        item: dict[str, Any] = {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        value = _echo(error.get("input"))
        if value is not None:
            item["input"] = value
        reshaped.append(item)
    return reshaped


def _describe(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc[1:] if len(loc) > 1 and loc[0] in {"query", "path", "body"} else loc)
    shown = f" (got {error['input']!r})" if "input" in error else ""
    return f"{where}: {error['msg']}{shown}"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc.errors())
    detail = "; ".join(_describe(error) for error in errors[:5]) or "invalid request"
    return problem_response(
        request, 422, detail, problem_type="validation", extra={"errors": errors}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path!r}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path!r}"
    return problem_response(
        request,
        exc.status_code,
        detail,
        problem_type=_HTTP_TYPES.get(exc.status_code),
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RecsysError, _recsys_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
