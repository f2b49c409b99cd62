"""The OpenAPI document with the limits that are settings, not code: ``install_openapi``.

FastAPI builds the schema from the route signatures, which are fixed at import time; the limits
a deployment configures (``serving.max_k``, ``serving.max_batch``) are only known to the app.
They are written into the generated document once, so a client (or a fuzzer) reads the limits
the server enforces: ``k`` gets ``maximum: max_k``, the events batch ``maxItems: max_batch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from recsys.config import Settings


def _integer_schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The integer schemas in ``schema`` (itself, or the branches of an ``anyOf``)."""
    if schema.get("type") == "integer":
        yield schema
    for branch in schema.get("anyOf", ()):
        yield from _integer_schemas(branch)


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                yield operation


def declare_limits(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``document`` (an OpenAPI dict, changed in place) with the configured limits."""
    limits = settings.serving
    for operation in _operations(document):
        for parameter in operation.get("parameters", ()):
            if parameter.get("name") == "k" and parameter.get("in") == "query":
                for schema in _integer_schemas(parameter.get("schema", {})):
                    schema["maximum"] = int(limits.max_k)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        for branch in body.get("schema", {}).get("oneOf", ()):
            events = branch.get("properties", {}).get("events")
            if isinstance(events, dict) and events.get("type") == "array":
                events["maxItems"] = int(limits.max_batch)
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (``/openapi.json``) state the limits of ``settings``."""

    generate = app.openapi  # FastAPI's own: builds the document once and caches it

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_limits(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
