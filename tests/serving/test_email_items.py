"""The offers' items ranked at training (``email_items.npz``) give the very bodies ranking them
at serving gives: a bundle trained on the real sample with its rankers, served twice (with the
precomputed items, and without them: the setting off, as an older bundle is served), every
customer's email batch compared byte for byte; a catalogue change or an event falls back to
ranking, with the same bodies again."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from servingkit import READ, WRITE, TestClient, retail_bundle_with_rankers

from recsys.bundle import ModelBundle, read_bundle, write_bundle
from recsys.config import Settings
from serving.app import create_app
from serving.email_items import EmailItems, StoreFormat
from serving.model_state import Snapshot
from training.email_items import email_items

AS_OF = "2011-09-01"


@pytest.fixture(scope="module")
def trained(retail_sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's bundle with both tasks' rankers and its email items, on disk."""
    bundle = retail_bundle_with_rankers(retail_sample_path, AS_OF)
    bundle.email_items = email_items(bundle)
    root = tmp_path_factory.mktemp("email-items-artifacts")
    write_bundle(bundle, root)
    return root


@pytest.fixture
def clients(settings: Settings, trained: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The bundle served with its precomputed items and without (each its own key prefix:
    budgets and contacts apart)."""
    with ExitStack() as stack:
        pair = []
        for on in (True, False):
            serving = settings.serving.model_copy(update={"email_items": on})
            own = settings.model_copy(
                update={
                    "artifacts": trained,
                    "redis_prefix": f"{settings.redis_prefix}:{'on' if on else 'off'}",
                    "serving": serving,
                }
            )
            pair.append(stack.enter_context(TestClient(create_app(own))))
        yield pair[0], pair[1]


def snapshot_of(client: TestClient) -> Snapshot:
    snapshot = client.app.state.serving.current()  # type: ignore[attr-defined]
    assert snapshot is not None
    return snapshot


def bodies(client: TestClient, ids: list[str]) -> list[bytes]:
    out = []
    for start in range(0, len(ids), 1000):
        body = {"customer_ids": ids[start : start + 1000], "k": 3, "channel": "email"}
        response = client.post("/v1/offers/batch", json=body, headers=READ)
        assert response.status_code == 200, response.text
        out.append(response.content)
    return out


def offer_items(content: bytes) -> dict[str, list[list[str]]]:
    """Per customer whose offers carry items, each such offer's items."""
    results: list[dict[str, Any]] = orjson.loads(content)["results"]
    return {
        r["customer_id"]: [o["items"] for o in r["offers"] if o["items"]]
        for r in results
        if any(o["items"] for o in r["offers"])
    }


def items_of(content: bytes) -> dict[str, list[str]]:
    return {c: [i for found in lists for i in found] for c, lists in offer_items(content).items()}


def test_the_bundle_holds_every_customers_items(trained: Path) -> None:
    bundle: ModelBundle = read_bundle(trained / (trained / "LATEST").read_text().strip())
    rows = bundle.email_items["rows"]
    assert rows.dtype == np.int32 and rows.shape[0] == len(bundle.customer_ids)
    assert rows.shape[1] > 0 and bool(bundle.email_items["compact"])
    blocked = bundle.email_items["blocked"]
    assert not blocked[rows[rows >= 0]].any()  # no blocked item ranked
    assert (rows[:, 0] >= 0).all()  # everyone has items


def test_precomputed_items_give_the_bodies_ranking_gives(
    clients: tuple[TestClient, TestClient], trained: Path
) -> None:
    on, off = clients
    bundle = read_bundle(trained / (trained / "LATEST").read_text().strip())
    ids = bundle.customer_ids.astype(str).tolist() + ["ghost-1"]
    assert snapshot_of(on).model.email_items is not None
    assert snapshot_of(on).catalog.email_items_valid
    assert snapshot_of(off).model.email_items is None
    before = bodies(on, ids)
    assert before == bodies(off, ids)
    with_items = items_of(before[0])
    assert len(with_items) > 20  # customers whose offers carry items: not a vacuous check
    for customer_id in list(with_items)[:10]:  # the single route takes them too
        url = f"/v1/customers/{customer_id}/offers?channel=email"
        assert on.get(url, headers=READ).content == off.get(url, headers=READ).content

    # an event that changes a customer's items: that customer is ranked again
    customer_id, items = next(iter(with_items.items()))
    dislike = {"customer_id": customer_id, "event_type": "dislike", "item_id": items[0]}
    for client in (on, off):
        response = client.post("/v1/events", json={"events": [dislike]}, headers=WRITE)
        assert response.status_code == 202, response.text
    after_event = bodies(on, ids)
    assert after_event == bodies(off, ids)
    assert items[0] not in items_of(after_event[0]).get(customer_id, [])

    # a catalogue change: the precomputed items no longer hold, everyone is ranked again
    counts: dict[str, int] = {}
    for found in items_of(after_event[0]).values():
        for item in found:
            counts[item] = counts.get(item, 0) + 1
    popular = max(counts, key=lambda item: counts[item])
    for client in (on, off):
        response = client.put(f"/v1/items/{popular}", json={"in_stock": False}, headers=WRITE)
        assert response.status_code == 200, response.text
    assert not snapshot_of(on).catalog.email_items_valid
    changed = bodies(on, ids)
    assert changed == bodies(off, ids)
    assert changed != after_event
    assert not any(popular in found for found in items_of(changed[0]).values())


def test_the_served_items_are_the_bundles_rows(
    settings: Settings, trained: Path, tmp_path: Path
) -> None:
    """The same bundle with each customer's precomputed rows reversed: those customers' email
    items come out reversed (the rows are served, not ranked again), the single route's too."""
    bundle = read_bundle(trained / (trained / "LATEST").read_text().strip())
    rows = bundle.email_items["rows"]
    reversed_rows = np.full_like(rows, -1)
    for u, row in enumerate(rows):
        kept = row[row >= 0]
        reversed_rows[u, : len(kept)] = kept[::-1]
    bundle.email_items = {**bundle.email_items, "rows": reversed_rows}
    write_bundle(bundle, tmp_path)
    tampered = settings.model_copy(update={"artifacts": tmp_path})
    ids = bundle.customer_ids.astype(str).tolist()
    with TestClient(create_app(tampered)) as client:
        served = offer_items(bodies(client, ids[:1000])[0])
        assert len(served) > 20
        row_of = {customer_id: u for u, customer_id in enumerate(ids)}
        item_ids = bundle.items.item_ids.astype(str)
        for customer_id, lists in served.items():
            mine = [str(item_ids[r]) for r in reversed_rows[row_of[customer_id]] if r >= 0]
            for found in lists:
                assert found == mine[: len(found)], customer_id
        for customer_id in list(served)[:5]:
            url = f"/v1/customers/{customer_id}/offers?channel=email"
            single = offer_items(b'{"results": [' + client.get(url, headers=READ).content + b"]}")
            assert single[customer_id] == served[customer_id]


def test_the_rows_are_left_out_where_the_store_holds_other_records(
    trained: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = read_bundle(trained / (trained / "LATEST").read_text().strip())
    longest = int(np.diff(bundle.history.indptr).max())
    assert EmailItems.from_bundle(bundle, StoreFormat(compact=True, max_history=None)) is not None
    assert EmailItems.from_bundle(bundle, StoreFormat(compact=True, max_history=longest))
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        # float32 vectors stored, float16 ranked; a history cap that cuts someone's history
        assert EmailItems.from_bundle(bundle, StoreFormat(compact=False, max_history=None)) is None
        assert EmailItems.from_bundle(bundle, StoreFormat(True, max_history=longest - 1)) is None
    assert [r.getMessage().split(": ")[-1] for r in caplog.records] == [
        "ranked with compact vectors True, stored False",
        f"histories of up to {longest} items, stored at most {longest - 1}",
    ]
    older = dataclasses.replace(bundle, email_items={})  # a bundle trained before them
    assert EmailItems.from_bundle(older, StoreFormat(compact=True, max_history=None)) is None
