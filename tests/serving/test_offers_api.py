"""Offers over HTTP: one customer, a batch, the NDJSON export; contact policy through events.

The offers bundle (``servingkit.make_offers_bundle``) has customers whose answers follow from
its catalogue (expected values in ``servingkit.OFFER_CUSTOMERS``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from servingkit import ADMIN, API_KEYS, READ, WRITE, TestClient, get_json

from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisFeatureStore
from recsys.config import ServingConfig, Settings
from recsys.events import utcnow
from serving.app import create_app

LOYAL = ["refer-a-friend", "favourites-10", "loyalty-reward"]


def offers(client: TestClient, customer_id: str, **params: Any) -> dict:
    params = {name: value for name, value in params.items() if value is not None}
    response = client.get(f"/v1/customers/{customer_id}/offers", params=params, headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def offer_ids(body: dict) -> list[str]:
    return [offer["offer_id"] for offer in body["offers"]]


def send(client: TestClient, *events: dict) -> None:
    response = client.post("/v1/events", json={"events": list(events)}, headers=WRITE)
    assert response.status_code == 202, response.text


def offer_sent(customer_id: str, offer_id: str, channel: str, days_ago: float = 0) -> dict:
    return {
        "customer_id": customer_id,
        "event_type": "offer_sent",
        "timestamp": (utcnow() - timedelta(days=days_ago)).isoformat(),
        "properties": {"offer_id": offer_id, "channel": channel},
    }


def test_offers_are_ranked_by_expected_value_with_items_and_reasons(
    offers_client: TestClient,
) -> None:
    body = offers(offers_client, "loyal-1", channel="email")
    assert offer_ids(body) == LOYAL
    assert (body["customer_id"], body["known"], body["channel"]) == ("loyal-1", True, "email")
    refer, favourites, loyalty = body["offers"]
    assert refer["score"] == pytest.approx(8.0) and refer["type"] == "referral_invitation"
    assert favourites["score"] == pytest.approx(1.7) and favourites["discount_pct"] == 10
    assert favourites["items"] == ["K0", "K1", "K2"]  # the kitchen lover's favourites
    assert loyalty["score"] == pytest.approx(1.6) and loyalty["items"] == []
    assert "6 orders" in loyalty["reason"]
    assert set(refer) == {
        "offer_id", "type", "title", "discount_pct", "items", "reason", "score", "expires_at",
        "policy", "propensity", "evidence",  # adaptive offers (issue 11): added, none removed
    }  # fmt: skip
    # adaptation on, no responses yet: the posterior mean is the hand-set prior
    assert refer["policy"] == "posterior_mean" and refer["propensity"] == pytest.approx(0.15)
    assert refer["evidence"] == {"responses": 0, "sends": 0}


def test_a_detractor_gets_service_recovery_only(offers_client: TestClient) -> None:
    for channel in ("email", "web", None):
        body = offers(offers_client, "detractor-1", channel=channel, k=10)
        assert offer_ids(body) == ["service-recovery"]
        assert body["offers"][0]["score"] == pytest.approx(10.0)


def test_a_customer_turned_detractor_by_a_survey_loses_every_sales_offer(
    offers_client: TestClient,
) -> None:
    survey = {"metric": "nps", "score": 2}
    send(offers_client, {"customer_id": "loyal-1", "event_type": "survey", "properties": survey})
    assert offer_ids(offers(offers_client, "loyal-1", channel="email")) == ["service-recovery"]


def test_no_marketing_consent_means_no_marketing_offer(offers_client: TestClient) -> None:
    assert offer_ids(offers(offers_client, "no-consent-1", k=10)) == ["review-request"]
    opt_out = {"marketing_consent": False}
    send(offers_client, {"customer_id": "at-risk-1", "event_type": "email_open",
                         "properties": opt_out})  # fmt: skip
    assert offer_ids(offers(offers_client, "at-risk-1", channel="email")) == []


def test_an_open_cart_brings_a_cart_reminder_with_the_cart_items(
    offers_client: TestClient,
) -> None:
    assert offer_ids(offers(offers_client, "cart-1", channel="web")) == ["welcome-5"]
    send(offers_client, {"customer_id": "cart-1", "event_type": "add_to_cart", "item_id": "K4"})
    body = offers(offers_client, "cart-1", channel="web")
    assert offer_ids(body) == ["welcome-5", "cart-reminder"]
    assert body["offers"][1]["items"] == ["K4"] and body["offers"][1]["score"] == pytest.approx(0.7)


def test_an_unknown_customer_gets_a_new_customers_offers(offers_client: TestClient) -> None:
    body = offers(offers_client, "stranger-1", channel="email")
    assert (body["known"], offer_ids(body)) == (False, ["welcome-5"])


def test_a_bundle_without_a_catalogue_uses_the_default_one(client: TestClient) -> None:
    body = offers(client, "stranger-1", channel="email")
    assert offer_ids(body) == ["welcome-5"]  # recsys/decisions/data/offers.yaml


def test_the_channel_cap_and_the_cool_down_follow_offer_sent_events(
    offers_client: TestClient,
) -> None:
    send(offers_client, offer_sent("loyal-1", "refer-a-friend", "email"))
    assert offer_ids(offers(offers_client, "loyal-1", channel="email")) == []  # 1 a week
    # the app allows two a week, but the offer just sent is cooling down on every channel
    assert offer_ids(offers(offers_client, "loyal-1", channel="app")) == LOYAL[1:]
    send(offers_client, offer_sent("loyal-1", "favourites-10", "app"))
    assert offer_ids(offers(offers_client, "loyal-1", channel="app")) == ["loyalty-reward"]
    send(offers_client, offer_sent("loyal-1", "loyalty-reward", "app"))
    assert offer_ids(offers(offers_client, "loyal-1", channel="app")) == []  # 2 a week
    assert offer_ids(offers(offers_client, "loyal-1", channel="web")) == []  # all cooling


def test_after_the_window_the_channel_opens_and_after_the_cool_down_the_offer_returns(
    offers_client: TestClient,
) -> None:
    send(offers_client, offer_sent("loyal-1", "refer-a-friend", "email", days_ago=8))
    assert offer_ids(offers(offers_client, "loyal-1", channel="email")) == LOYAL[1:]
    send(offers_client, offer_sent("at-risk-1", "win-back-15", "email", days_ago=15))
    assert offer_ids(offers(offers_client, "at-risk-1", channel="email"))[0] == "win-back-15"


def test_a_malformed_offer_sent_is_a_422(offers_client: TestClient) -> None:
    bad = offer_sent("loyal-1", "a|b", "email")
    response = offers_client.post("/v1/events", json=bad, headers=WRITE)
    assert response.status_code == 422 and "offer_id" in response.json()["detail"]


def test_bad_parameters_are_422_problems(offers_client: TestClient) -> None:
    for params in ({"k": 0}, {"k": 21}, {"channel": "E-mail!"}):
        response = offers_client.get("/v1/customers/loyal-1/offers", params=params, headers=READ)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


# -- batch ------------------------------------------------------------------------------------


def batch(client: TestClient, body: dict) -> Any:
    return client.post("/v1/offers/batch", json=body, headers=READ)


def test_a_batch_answers_every_id_in_order_as_the_single_route_does(
    offers_client: TestClient,
) -> None:
    send(offers_client, {"customer_id": "cart-1", "event_type": "add_to_cart", "item_id": "G5"})
    ids = ["loyal-1", "ghost-9", "detractor-1", "no-consent-1", "cart-1", "at-risk-1", "loyal-1"]
    response = batch(offers_client, {"customer_ids": ids, "k": 3, "channel": "email"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["customer_id"] for r in results] == ids
    assert [offer_ids(r) for r in results] == [
        LOYAL,
        ["welcome-5"],
        ["service-recovery"],
        ["review-request"],
        ["welcome-5", "cart-reminder"],
        ["win-back-15", "favourites-10"],
        LOYAL,
    ]
    assert [r["known"] for r in results] == [True, False, True, True, True, True, True]
    for result in results:
        single = offers(offers_client, result["customer_id"], channel="email", k=3)
        assert result["offers"] == single["offers"]


def test_a_web_batch_fills_items_from_views_and_dislikes_as_the_single_route_does(
    offers_client: TestClient,
) -> None:
    views = [{"customer_id": "loyal-1", "event_type": "view", "item_id": item}
             for item in ("G2", "G1")]  # fmt: skip
    send(offers_client, *views, {"customer_id": "loyal-1", "event_type": "dislike",
                                 "item_id": "K1"})  # fmt: skip
    ids = ["loyal-1", "at-risk-1", "detractor-1", "ghost-9"]
    results = batch(offers_client, {"customer_ids": ids, "channel": "web"}).json()["results"]
    by_id = {r["customer_id"]: r for r in results}
    favourites = next(o for o in by_id["loyal-1"]["offers"] if o["offer_id"] == "favourites-10")
    items = favourites["items"]
    # the kitchen lover's favourite first, the disliked item never, and the viewed garden
    # items' neighbours next to their kitchen items
    assert items[0] == "K0" and "K1" not in items
    assert any(item.startswith("G") for item in items)
    for result in results:
        single = offers(offers_client, result["customer_id"], channel="web", k=3)
        assert result["offers"] == single["offers"]


def test_a_batch_recomputes_customers_changed_by_events_as_the_single_route_does(
    offers_client: TestClient,
) -> None:
    # a purchase writes its times in the events' ISO form, next to the batch's own form in
    # the same table: both must be read, or the batch's CLV (loyalty reward) goes stale
    purchase = {"customer_id": "loyal-1", "event_type": "purchase", "item_id": "K3",
                "quantity": 1, "price": 40.0, "order_id": "o-1"}  # fmt: skip
    survey = {"customer_id": "at-risk-1", "event_type": "survey",
              "properties": {"metric": "nps", "score": 9}}  # fmt: skip
    send(offers_client, purchase, survey)
    ids = ["loyal-1", "at-risk-1", "cart-1"]
    results = batch(offers_client, {"customer_ids": ids, "channel": "email", "k": 10})
    by_id = {r["customer_id"]: r for r in results.json()["results"]}
    single = offers(offers_client, "loyal-1", channel="email", k=10)
    loyalty = next(o for o in single["offers"] if o["offer_id"] == "loyalty-reward")
    assert loyalty["score"] != pytest.approx(1.6)  # the CLV of today's state, not the batch's
    for customer_id in ids:
        single = offers(offers_client, customer_id, channel="email", k=10)
        assert by_id[customer_id]["offers"] == single["offers"], customer_id


def test_a_batch_respects_the_contact_policy(offers_client: TestClient) -> None:
    send(offers_client, offer_sent("loyal-1", "refer-a-friend", "email"))
    body = {"customer_ids": ["loyal-1", "at-risk-1"], "channel": "email"}
    results = batch(offers_client, body).json()["results"]
    assert [offer_ids(r) for r in results] == [[], ["win-back-15", "favourites-10"]]


def test_a_batch_over_1000_ids_or_with_a_bad_id_is_a_422(offers_client: TestClient) -> None:
    too_many = batch(offers_client, {"customer_ids": [f"c{i}" for i in range(1001)]})
    assert too_many.status_code == 422
    assert too_many.headers["content-type"] == "application/problem+json"
    bad = batch(offers_client, {"customer_ids": ["ok", "not ok"]})
    assert bad.status_code == 422 and "customer_ids[1]" in bad.text
    assert batch(offers_client, {"customer_ids": []}).status_code == 422


class CountingConnection(redis.Connection):
    """Counts writes to the socket: one per command, one per pipeline."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)


def test_a_batch_of_1000_and_one_customers_offers_each_read_the_store_once_then_their_counts(
    offers_settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    """One round trip for the customers, one for the learned counts of their cells (known only
    once the customers are read; never cached, so every recorded response is seen)."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    store = RedisFeatureStore(client, redis_prefix)
    ids = [*(f"ghost-{i}" for i in range(995)), "loyal-1", "detractor-1", "cart-1", "x", "y"]
    with TestClient(create_app(offers_settings, store=store)) as http:
        assert batch(http, {"customer_ids": ids[:3]}).status_code == 200  # warm
        CountingConnection.sends = 0
        response = batch(http, {"customer_ids": ids, "channel": "email"})
        assert response.status_code == 200 and len(response.json()["results"]) == 1000
        assert CountingConnection.sends == 2
        CountingConnection.sends = 0
        offers(http, "loyal-1", channel="email")
        assert CountingConnection.sends == 2
    store.close()


# -- export -----------------------------------------------------------------------------------


def export(client: TestClient, headers: dict[str, str] = ADMIN, **params: Any) -> Any:
    return client.get("/v1/offers/export", params=params, headers=headers)


def lines(response: Any) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    text = response.text
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture
def small_chunks(offers_settings: Settings) -> Settings:
    return offers_settings.model_copy(update={"serving": ServingConfig(export_chunk=2)})


def test_the_export_holds_every_eligible_customer_exactly_once(small_chunks: Settings) -> None:
    with TestClient(create_app(small_chunks)) as client:
        newcomers = [f"new-{i}" for i in range(7)]
        send(client, *({"customer_id": c, "event_type": "view", "item_id": "G1"}
                       for c in newcomers))  # fmt: skip
        send(client, {"customer_id": "new-3", "event_type": "email_open",
                      "properties": {"marketing_consent": False}})  # fmt: skip
        send(client, offer_sent("loyal-1", "refer-a-friend", "email"))  # capped this week
        send(client, {"customer_id": "cart-1", "event_type": "view", "item_id": "G1"})
        assert client.delete("/v1/customers/at-risk-1", headers=ADMIN).status_code == 204
        rows = lines(export(client, channel="email"))
    ids = [row["customer_id"] for row in rows]
    expected = {"detractor-1", "cart-1", *newcomers} - {"new-3"}
    assert sorted(ids) == sorted(expected)  # each once: no-consent, capped, erased left out
    by_id = {row["customer_id"]: row for row in rows}
    assert offer_ids(by_id["detractor-1"]) == ["service-recovery"]
    assert offer_ids(by_id["new-0"]) == ["welcome-5"] and by_id["new-0"]["known"] is True
    assert ids[:2] == ["cart-1", "detractor-1"]  # the bundle's customers first, in id order


def test_the_export_needs_admin_and_a_valid_channel(offers_client: TestClient) -> None:
    assert export(offers_client, headers=READ).status_code == 403
    assert export(offers_client, channel="no way").status_code == 422
    rows = lines(export(offers_client, channel="sms"))
    assert [(r["customer_id"], offer_ids(r)) for r in rows] == [("at-risk-1", ["win-back-15"])]


def test_offers_need_the_store_and_say_so_with_a_503(
    tmp_path: Path, offers_artifacts: Path
) -> None:
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        settings = Settings(redis_url=server.url, artifacts=offers_artifacts, api_keys=API_KEYS)
        with TestClient(create_app(settings)) as client:
            assert offers(client, "loyal-1", channel="email")["offers"]
            server.stop()
            for response in (
                client.get("/v1/customers/loyal-1/offers", headers=READ),
                batch(client, {"customer_ids": ["loyal-1"]}),
                export(client),
                client.get("/v1/customers/loyal-1/next-best-action", headers=READ),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"


def test_an_unknown_channel_is_a_422_problem_on_every_offer_route(
    offers_client: TestClient,
) -> None:
    """``fax`` is well formed but no offer goes out on it: not 200 with nothing in it."""
    responses = [
        offers_client.get("/v1/customers/loyal-1/offers?channel=fax", headers=READ),
        offers_client.post(
            "/v1/offers/batch", json={"customer_ids": ["loyal-1"], "channel": "fax"}, headers=READ
        ),
        offers_client.get("/v1/offers/export?channel=fax", headers=ADMIN),
        offers_client.get("/v1/customers/loyal-1/next-best-action?channel=fax", headers=READ),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "unknown channel 'fax'" in response.json()["detail"]
    known = offers_client.get("/v1/customers/loyal-1/offers?channel=email", headers=READ)
    assert known.status_code == 200
