"""Locust load test: page views, product pages, events and email batches in realistic proportions.

Customer and item ids come from the model the server loaded (``RECSYS_ARTIFACTS``, default
``.demo/artifacts``), plus some unknown customers for the cold-start path. Traffic goes only to
the ``--host`` given (use 127.0.0.1); run it headless and bounded::

    locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

``RECSYS_LOADTEST_API_KEY`` is sent as ``X-API-Key`` when the server has keys configured.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from locust import HttpUser, between, task

from recsys.bundle import latest_version_dir, read_bundle

_BUNDLE = read_bundle(
    latest_version_dir(Path(os.environ.get("RECSYS_ARTIFACTS", ".demo/artifacts")))
)
CUSTOMERS = [str(c) for c in _BUNDLE.customer_ids]
_PRODUCT_ROWS = np.flatnonzero(_BUNDLE.items.is_product)
ITEMS = [str(i) for i in _BUNDLE.items.item_ids[_PRODUCT_ROWS]]
POPULAR = [str(_BUNDLE.items.item_ids[r]) for r in _BUNDLE.popular[:200]]
HEADERS = (
    {"X-API-Key": os.environ["RECSYS_LOADTEST_API_KEY"]}
    if os.environ.get("RECSYS_LOADTEST_API_KEY")
    else {}
)


def _customer() -> str:
    # one page view in ten comes from someone the model has never seen
    if random.random() < 0.1:
        return f"visitor-{random.randrange(1_000_000)}"
    return random.choice(CUSTOMERS)


def page_view(client: Any, path: str, name: str) -> None:
    """A recommendation request that counts as failed unless personalized or cold start: a
    ``fallback`` answer is a 200, but it means the service could not use the store, and a load
    test that calls it a success hides exactly what it is there to find."""
    with client.get(path, headers=HEADERS, name=name, catch_response=True) as response:
        if response.status_code != 200:
            response.failure(f"status {response.status_code}")
            return
        strategy = response.json().get("strategy")
        if strategy == "fallback":
            response.failure("fallback answer (the store was not used)")
        else:
            response.success()


class Shopper(HttpUser):
    """A website visitor: mostly page views, some events."""

    weight = 10
    wait_time = between(0.0, 0.05)

    @task(40)
    def home_page(self) -> None:
        page_view(
            self.client,
            f"/v1/customers/{_customer()}/recommendations?k=10&context=home",
            "/v1/customers/[id]/recommendations?context=home",
        )

    @task(25)
    def product_page(self) -> None:
        item = random.choice(POPULAR)
        page_view(
            self.client,
            f"/v1/customers/{_customer()}/recommendations?k=8&context=product&item_id={item}",
            "/v1/customers/[id]/recommendations?context=product",
        )

    @task(8)
    def similar(self) -> None:
        self.client.get(
            f"/v1/items/{random.choice(POPULAR)}/similar?k=10",
            headers=HEADERS,
            name="/v1/items/[id]/similar",
        )

    @task(4)
    def popular(self) -> None:
        self.client.get("/v1/popular?k=20", headers=HEADERS)

    @task(10)
    def view_event(self) -> None:
        self.client.post(
            "/v1/events",
            json={
                "customer_id": random.choice(CUSTOMERS),
                "event_type": random.choice(["view", "view", "view", "add_to_cart"]),
                "item_id": random.choice(ITEMS),
                "timestamp": datetime.now(UTC).isoformat(),
            },
            headers=HEADERS,
            name="/v1/events",
        )

    @task(3)
    def profile(self) -> None:
        self.client.get(
            f"/v1/customers/{random.choice(CUSTOMERS)}", headers=HEADERS, name="/v1/customers/[id]"
        )

    @task(3)
    def next_best_action(self) -> None:
        self.client.get(
            f"/v1/customers/{random.choice(CUSTOMERS)}/next-best-action?channel=web",
            headers=HEADERS,
            name="/v1/customers/[id]/next-best-action",
        )


class EmailCampaign(HttpUser):
    """The email system: offers for 500 customers at a time."""

    weight = 1
    wait_time = between(0.5, 1.0)

    @task
    def offers_batch(self) -> None:
        ids = random.sample(CUSTOMERS, min(500, len(CUSTOMERS)))
        self.client.post(
            "/v1/offers/batch",
            json={"customer_ids": ids, "k": 3, "channel": "email"},
            headers=HEADERS,
            name="/v1/offers/batch",
        )
