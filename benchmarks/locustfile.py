"""Locust load test that behaves like the service's callers.

* :class:`Shopper`, the website: a visit is a home page, a product page (picked from what the
  home page showed), sometimes a cart page after an ``add_to_cart`` event and sometimes a
  purchase; a visitor reads each page for a few seconds (think time) before the next. After a
  purchase the next page must not recommend the bought item (``exclude_purchased`` defaults
  to true): one that does counts as a failure ("the next answers reflect it").
* :class:`EmailSystem`: offers for 500 customers at a time (``POST /v1/offers/batch``) and, now
  and then, the whole campaign export (``GET /v1/offers/export``, NDJSON read to the end).
* :class:`App`: the mobile apps send a batch of events, then ask for recommendations and the
  next best action.

Customer and item ids come from the server under test (``GET /v1/model/sample-ids``, read
scope), fetched once per Locust process: pointed at another server, the test uses that server's
ids. One visit in ten is from a visitor the model has never seen (the cold-start path). A
``fallback`` answer of a page view is a 200 but counts as a failure (:func:`page_view`).

    make loadtest HOST=http://127.0.0.1:8000 USERS=50 DURATION=60s

Settings (environment): ``RECSYS_LOADTEST_API_KEY`` (sent as ``X-API-Key``; it needs read and
write scope), ``RECSYS_LOADTEST_THINK`` (think-time factor, default 1; 0 is a stress test),
``RECSYS_LOADTEST_SAMPLE`` (ids fetched, default 1000).
"""

from __future__ import annotations

import json
import logging
import os
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gevent.lock import Semaphore
from locust import HttpUser, between, events, task
from locust.exception import StopUser

log = logging.getLogger("loadtest")

HEADERS = (
    {"X-API-Key": os.environ["RECSYS_LOADTEST_API_KEY"]}
    if os.environ.get("RECSYS_LOADTEST_API_KEY")
    else {}
)
THINK = float(os.environ.get("RECSYS_LOADTEST_THINK", "1"))
SAMPLE = int(os.environ.get("RECSYS_LOADTEST_SAMPLE", "1000"))
RECS = "/v1/customers/[id]/recommendations"


def think(low: float, high: float) -> Any:
    """Locust's ``between`` scaled by ``RECSYS_LOADTEST_THINK``."""
    return between(low * THINK, high * THINK)


@dataclass(frozen=True)
class KnownIds:
    model_version: str
    customers: list[str]
    items: list[str]
    popular: list[str]


_IDS: KnownIds | None = None
_IDS_LOCK = Semaphore()


def known_ids(user: HttpUser) -> KnownIds:
    """The server's sample of known ids, fetched by the first user of this process."""
    global _IDS
    with _IDS_LOCK:
        if _IDS is None:
            response = user.client.get(
                f"/v1/model/sample-ids?n={SAMPLE}", headers=HEADERS, name="/v1/model/sample-ids"
            )
            if response.status_code != 200:
                log.error(
                    "GET /v1/model/sample-ids answered %s: is a model served at %s, and does "
                    "RECSYS_LOADTEST_API_KEY have read scope? Stopping.",
                    response.status_code,
                    user.host,
                )
                if user.environment.runner is not None:
                    user.environment.runner.quit()
                raise StopUser()
            body = response.json()
            _IDS = KnownIds(
                body["model_version"],
                body["customer_ids"],
                body["item_ids"],
                body["popular_item_ids"] or body["item_ids"],
            )
            log.info(
                "model %s: %d customers, %d items sampled from the server",
                _IDS.model_version,
                len(_IDS.customers),
                len(_IDS.items),
            )
    return _IDS


def now() -> str:
    return datetime.now(UTC).isoformat()


def page_view(
    client: Any, path: str, name: str, must_not_show: str | None = None
) -> dict[str, Any] | None:
    """A recommendation request that counts as failed unless personalized or cold start: a
    ``fallback`` answer is a 200, but it means the service could not use the store, and a load
    test that calls it a success hides exactly what it is there to find. ``must_not_show``: an
    item the answer must not contain (one the customer just bought). Returns the body."""
    with client.get(path, headers=HEADERS, name=name, catch_response=True) as response:
        if response.status_code != 200:
            response.failure(f"status {response.status_code}: {response.error or ''}")
            return None
        body: dict[str, Any] = response.json()
        shown = [item["item_id"] for item in body.get("items", [])]
        if body.get("strategy") == "fallback":
            response.failure("fallback answer (the store was not used)")
        elif must_not_show is not None and must_not_show in shown:
            response.failure("a purchased item is still recommended after the purchase")
        else:
            response.success()
        return body


def post_events(client: Any, events: list[dict[str, Any]]) -> bool:
    with client.post(
        "/v1/events",
        json=events[0] if len(events) == 1 else {"events": events},
        headers=HEADERS,
        name="/v1/events" if len(events) == 1 else "/v1/events (batch)",
        catch_response=True,
    ) as response:
        if response.status_code != 202:
            response.failure(
                f"status {response.status_code}: {response.error or response.text[:200]}"
            )
            return False
        response.success()
        return True


def event(customer: str, event_type: str, item: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "event_type": event_type,
        "item_id": item,
        "timestamp": now(),
        "event_id": uuid.uuid4().hex,  # idempotent: a retried request is not counted twice
        **extra,
    }


class Shopper(HttpUser):
    """A website visitor: home, product and cart pages, with think times between them."""

    weight = 10
    wait_time = think(2.0, 6.0)

    def on_start(self) -> None:
        self.ids = known_ids(self)

    def _customer(self) -> str:
        if random.random() < 0.1:  # one visit in ten from someone the model has never seen
            return f"visitor-{uuid.uuid4().hex[:12]}"
        return random.choice(self.ids.customers)

    def _pause(self) -> None:
        self.wait()  # the visitor reads the page

    @task
    def visit(self) -> None:
        customer = self._customer()
        home = page_view(
            self.client, f"/v1/customers/{customer}/recommendations?k=10&context=home", RECS
        )
        self._pause()
        shown = [item["item_id"] for item in (home or {}).get("items", [])]
        item = random.choice(shown or self.ids.popular)
        post_events(self.client, [event(customer, "view", item)])
        page_view(
            self.client,
            f"/v1/customers/{customer}/recommendations?k=8&context=product&item_id={item}",
            RECS + "?context=product",
        )
        self.client.get(
            f"/v1/items/{item}/similar?k=10", headers=HEADERS, name="/v1/items/[id]/similar"
        )
        if random.random() < 0.6:
            return  # most visits end on a product page
        self._pause()
        post_events(self.client, [event(customer, "add_to_cart", item)])
        page_view(
            self.client,
            f"/v1/customers/{customer}/recommendations?k=6&context=cart",
            RECS + "?context=cart",
        )
        if random.random() < 0.5:
            return  # an abandoned cart
        self._pause()
        order = f"web-{uuid.uuid4().hex[:16]}"
        bought = post_events(
            self.client, [event(customer, "purchase", item, quantity=1, order_id=order)]
        )
        page_view(  # the thank-you page: the bought item must be gone
            self.client,
            f"/v1/customers/{customer}/recommendations?k=10&context=home",
            RECS + "?context=home (after purchase)",
            must_not_show=item if bought else None,
        )


class EmailSystem(HttpUser):
    """The email system: offers for 500 customers at a time; now and then the full export."""

    weight = 1
    wait_time = think(1.0, 3.0)

    def on_start(self) -> None:
        self.ids = known_ids(self)

    @task(10)
    def offers_batch(self) -> None:
        customers = random.sample(self.ids.customers, min(500, len(self.ids.customers)))
        with self.client.post(
            "/v1/offers/batch",
            json={"customer_ids": customers, "k": 3, "channel": "email"},
            headers=HEADERS,
            name="/v1/offers/batch",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif len(response.json()["results"]) != len(customers):
                response.failure("the batch did not answer every customer")
            else:
                response.success()

    @task(1)
    def campaign_export(self) -> None:
        with self.client.get(
            "/v1/offers/export?channel=email",
            headers=HEADERS,
            name="/v1/offers/export (NDJSON, read to the end)",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            lines = 0
            try:
                for line in response.iter_lines():
                    if line:
                        json.loads(line)
                        lines += 1
            except ValueError as exc:
                response.failure(f"line {lines + 1} is not JSON: {exc}")
                return
            if lines == 0:
                response.failure("an empty export")
            else:
                response.success()


class App(HttpUser):
    """The mobile apps: a batch of events, then recommendations and the next best action."""

    weight = 3
    wait_time = think(3.0, 10.0)

    def on_start(self) -> None:
        self.ids = known_ids(self)
        self.customer = random.choice(self.ids.customers)

    @task
    def session(self) -> None:
        items = random.sample(self.ids.items, min(3, len(self.ids.items)))
        events = [event(self.customer, "view", item) for item in items]
        events.append(event(self.customer, "add_to_cart", items[-1]))
        post_events(self.client, events)
        page_view(
            self.client,
            f"/v1/customers/{self.customer}/recommendations?k=20&context=home",
            RECS + "?context=home (app)",
        )
        self.client.get(
            f"/v1/customers/{self.customer}/next-best-action?channel=app",
            headers=HEADERS,
            name="/v1/customers/[id]/next-best-action",
        )


MAX_FAIL_RATIO = float(os.environ.get("RECSYS_LOADTEST_MAX_FAIL_RATIO", "0.01"))


@events.quitting.add_listener
def _verdict(environment: Any, **_: Any) -> None:
    """The exit code: 1 when more than ``RECSYS_LOADTEST_MAX_FAIL_RATIO`` of the requests
    failed (Locust's own default fails on any failure), with the reason on stderr."""
    ratio = environment.stats.total.fail_ratio
    if ratio > MAX_FAIL_RATIO:
        log.error(
            "failure ratio %.4f > %.4f (RECSYS_LOADTEST_MAX_FAIL_RATIO)", ratio, MAX_FAIL_RATIO
        )
        environment.process_exit_code = 1
    elif environment.stats.total.num_requests == 0:
        log.error("no request was made")
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0
