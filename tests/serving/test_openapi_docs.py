"""``/openapi.json`` explains itself: every schema property has a description and an example,
every example is valid against its own schema, every operation has a hand-written summary, and
the NDJSON export documents its lines.

The document is the real app's (``create_app``), fetched over HTTP as a client sees it; examples
are checked with jsonschema-rs (the validator schemathesis uses) with formats on, so an example
the fuzz test (``test_fuzz.py``) would send and the server refuse cannot creep in.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import orjson
import pytest
from fastapi.routing import APIRoute
from servingkit import ADMIN, READ, WRITE, TestClient

import serving.routes
from serving.routes.offers import NDJSON

Document = dict[str, Any]
#: Keys whose values are example payloads, not schemas: never walked as schemas.
_EXAMPLE_KEYS = ("example", "examples")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture
def document(client: TestClient) -> Document:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc: Document = response.json()
    return doc


def _nodes(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object of the document with its path, example payloads left out."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key not in _EXAMPLE_KEYS:
                yield from _nodes(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{where}/{i}")


def _properties(doc: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of every schema (components and inline ones), by its path."""
    for where, node in _nodes(doc):
        properties = node.get("properties")
        if where.endswith("/properties") or not isinstance(properties, dict):
            continue  # a property named "properties" is a property, not a schema's map
        for name, schema in properties.items():
            yield f"{where}/properties/{name}", schema


def _validator(schema: dict[str, Any], doc: Document) -> jsonschema_rs.Validator:
    """``schema`` (OpenAPI 3.1: JSON Schema 2020-12) with the document's components beside
    it, so its ``#/components/schemas/...`` references resolve; formats are checked."""
    root = {key: value for key, value in schema.items() if key not in _EXAMPLE_KEYS}
    return jsonschema_rs.Draft202012Validator(
        {**root, "components": doc["components"]}, validate_formats=True
    )


def _errors(validator: jsonschema_rs.Validator, instance: Any) -> list[str]:
    return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(instance)]


def _operations(doc: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in _METHODS:
                yield f"{method.upper()} {path}", operation


def _resolve(ref: str, doc: Document) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _full_example(schema: dict[str, Any]) -> dict[str, Any]:
    """An object made of its properties' first examples (what schemathesis sends first)."""
    return {name: prop["examples"][0] for name, prop in schema["properties"].items()}


def test_every_schema_property_has_a_description_and_an_example(document: Document) -> None:
    properties = dict(_properties(document))
    assert len(properties) > 140
    assert any("/requestBody/" in where for where in properties)  # inline schemas walked too
    undescribed = [where for where, schema in properties.items() if not schema.get("description")]
    unexampled = [where for where, schema in properties.items() if not schema.get("examples")]
    assert not undescribed, "no description:\n" + "\n".join(undescribed)
    assert not unexampled, "no example:\n" + "\n".join(unexampled)


def test_the_events_body_is_described_field_by_field(document: Document) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    one, batch = body["schema"]["oneOf"]
    assert one["properties"]["item_id"]["description"].startswith("the product")
    assert batch["properties"]["events"]["items"] == one
    assert "none" in batch["properties"]["events"]["description"]  # all or nothing


def test_every_example_is_valid_against_its_own_schema(document: Document) -> None:
    checked, invalid = 0, []
    for where, node in _nodes(document):
        examples = node.get("examples")
        if not isinstance(examples, list):
            continue  # a media type's `examples` is a map of Example Objects, not a list
        validator = _validator(node, document)
        for i, example in enumerate(examples):
            checked += 1
            invalid += [f"{where}/examples/{i}{error}" for error in _errors(validator, example)]
    assert checked > 140
    assert not invalid, "examples that break their own schema:\n" + "\n".join(invalid)


def test_an_object_of_the_first_examples_is_valid_too(document: Document) -> None:
    """Each model's property examples together make a valid object (Swagger UI and
    schemathesis compose them like this)."""
    schemas = document["components"]["schemas"]
    for name, schema in schemas.items():
        if "properties" in schema:
            assert not _errors(_validator(schema, document), _full_example(schema)), name


def test_the_documented_request_examples_are_accepted(
    offers_client: TestClient, document: Document
) -> None:
    """Not only schema-valid: the server takes them (ids, channel and time limits included)."""
    schemas = document["components"]["schemas"]
    events = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    (event,) = events["schema"]["examples"]
    response = offers_client.post("/v1/events", json=event, headers=WRITE)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    batch_schema = events["schema"]["oneOf"][1]["properties"]["events"]
    batch = {"events": batch_schema["examples"][0]}
    response = offers_client.post("/v1/events", json=batch, headers=WRITE)
    assert response.status_code == 202, response.text
    assert response.json()["duplicates"] == 1  # the purchase again: the same event_id

    request = _full_example(schemas["OffersBatchRequest"])
    response = offers_client.post("/v1/offers/batch", json=request, headers=READ)
    assert response.status_code == 200, response.text
    ids = [result["customer_id"] for result in response.json()["results"]]
    assert ids == request["customer_ids"]

    update = _full_example(schemas["ItemUpdate"])
    item = offers_client.get("/v1/model/sample-ids?n=1", headers=READ).json()["item_ids"][0]
    response = offers_client.put(f"/v1/items/{item}", json=update, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in update} == update


def _documented_routes() -> list[APIRoute]:
    """The routes of every module of ``serving.routes`` that the document shows."""
    routes = []
    for module in pkgutil.iter_modules(serving.routes.__path__):
        router = getattr(importlib.import_module(f"serving.routes.{module.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute) and route.include_in_schema:
                routes.append(route)
    return routes


def test_every_operation_has_a_hand_written_summary_and_a_description(
    document: Document,
) -> None:
    operations = dict(_operations(document))
    assert len(operations) >= 20
    missing = [
        f"{where}: {field}"
        for where, operation in operations.items()
        for field in ("summary", "description")
        if not operation.get(field, "").strip()
    ]
    assert not missing, "operations without:\n" + "\n".join(missing)
    routes = _documented_routes()
    assert sum(len(route.methods) for route in routes) == len(operations)
    generated = [  # FastAPI makes "Get Offers" of the function's name when none is given
        f"{sorted(route.methods)} {route.path}" for route in routes if not route.summary
    ]
    assert not generated, "summaries made from function names:\n" + "\n".join(generated)


def test_every_success_response_declares_its_body(document: Document) -> None:
    bare = [
        f"{where} {status}"
        for where, operation in _operations(document)
        for status, response in operation["responses"].items()
        if status.startswith("2") and status != "204" and where != "GET /metrics"
        for media in response.get("content", {"": {}}).values()
        if not media.get("schema")
    ]
    assert not bare, "success responses without a schema:\n" + "\n".join(bare)


def _export(document: Document) -> dict[str, Any]:
    response = document["paths"]["/v1/offers/export"]["get"]["responses"]["200"]
    assert "one JSON object per line" in response["description"]
    assert list(response["content"]) == [NDJSON]  # no application/json body is declared
    media: dict[str, Any] = response["content"][NDJSON]
    return media


def test_the_ndjson_export_documents_one_line_and_its_example(document: Document) -> None:
    media = _export(document)
    line = media["schema"]
    assert line["$ref"] == "#/components/schemas/CustomerOffers"
    assert "one JSON object per line" in line["description"]
    assert set(_resolve(line["$ref"], document)["required"]) == {"customer_id", "known", "offers"}
    example = media["example"]
    assert isinstance(example, str) and example.endswith("\n")
    lines = example.splitlines()
    assert len(lines) == 2
    validator = _validator(line, document)
    for text in lines:
        assert not _errors(validator, orjson.loads(text)), text


def test_every_line_the_export_sends_is_what_the_schema_documents(
    offers_client: TestClient,
) -> None:
    document = offers_client.get("/openapi.json").json()
    validator = _validator(_export(document)["schema"], document)
    response = offers_client.get("/v1/offers/export?channel=email", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(NDJSON)
    lines = response.text.splitlines()
    assert lines and response.text.endswith("\n")
    for text in lines:
        line = orjson.loads(text)
        assert not _errors(validator, line), text
        assert line["offers"]  # only customers with an offer are exported
