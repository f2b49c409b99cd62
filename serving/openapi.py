"""What a browser gets besides the API: offline docs, the OpenAPI error schema, CORS.

* ``/docs`` (Swagger UI) and ``/redoc`` are ``fastapi_offline``'s pages: their JavaScript and
  CSS come from that package, served by this app under ``/static-offline-docs``, so the pages
  render on a machine without internet.
* Every error response in ``/openapi.json`` (4xx and 5xx) is declared as what the service
  really sends: the :class:`~serving.models.Problem` schema under ``application/problem+json``
  (FastAPI would put it under ``application/json`` and add its own 422 body).
* CORS: with ``settings.cors_origins`` set, Starlette's ``CORSMiddleware`` answers preflights
  from those origins and adds the headers to their requests; other origins get no CORS headers
  (the browser then refuses the response). With none configured there is no CORS at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from recsys.config import Settings
from serving.auth import API_KEY_HEADER
from serving.errors import PROBLEM_JSON
from serving.middleware import REQUEST_ID_HEADER

PROBLEM_REF = "#/components/schemas/Problem"
#: FastAPI's own 422 body, unused once every error is problem+json.
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
CORS_METHODS = ("GET", "POST", "PUT", "DELETE")
CORS_REQUEST_HEADERS = (API_KEY_HEADER, REQUEST_ID_HEADER, "Content-Type")
CORS_EXPOSED_HEADERS = (REQUEST_ID_HEADER, "Retry-After", "WWW-Authenticate")


def make_app(**kwargs: Any) -> FastAPI:
    """A FastAPI application whose ``/docs`` and ``/redoc`` use packaged assets."""
    app = FastAPIOffline(**kwargs)
    app.openapi = _problem_json_openapi(app)  # type: ignore[method-assign]
    return app


def declare_problem_json(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx response of ``schema`` as ``Problem`` under problem+json (in place)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if str(status)[:1] in {"4", "5"}:
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    components = schema.get("components", {}).get("schemas", {})
    for name in _FASTAPI_ERROR_SCHEMAS:
        if name in components:
            unused = components.pop(name)
            if f"#/components/schemas/{name}" in json.dumps(schema):
                components[name] = unused  # still referenced somewhere: keep it
    return schema


def _problem_json_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problem_json(generate())
        return app.openapi_schema

    return openapi


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Starlette's CORS middleware for ``settings.cors_origins``; nothing when there are none."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(CORS_METHODS),
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=600,
    )
