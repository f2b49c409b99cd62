"""The serving tests' known-answer model bundle and HTTP helpers (imported by the tests).

The bundle (:func:`make_bundle`) has two categories whose right answers are obvious:

* kitchen items ``K0..K5`` with factors along axis 0, garden items ``G0..G5`` along axis 1, each
  weaker than the one before (so K0 > K1 > ... for a kitchen lover);
* neighbours within a category only (``K3``'s best neighbours are ``K2`` and ``K4``...), except
  that ``G3``'s best neighbour is ``OOS``, which is out of stock and must never be shown;
* popularity: ``POST`` (a non-product code) and ``OOS`` (out of stock) are the best sellers,
  then the garden items, then the kitchen items: a cold-start answer is garden first and never
  holds ``POST`` or ``OOS``;
* customers ``kitchen-1`` (vector along axis 0, bought ``K0`` three times) and ``garden-1``
  (axis 1, bought ``G0``), with a few features each.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnx.numpy_helper
import pandas as pd
import redis
import scipy.sparse as sp
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from feature_store import codec, keys
from feature_store.embedded import free_port
from recsys.bundle import DataWindow, ItemTable, Manifest, ModelBundle
from recsys.customers.churn import CHURN_FEATURES
from recsys.store import LiveRecord

with warnings.catch_warnings():
    # Starlette 1.10 prefers httpx2 for its TestClient and warns once, on import, with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient  # noqa: F401 (re-exported for the tests)

KITCHEN = [f"K{i}" for i in range(6)]
GARDEN = [f"G{i}" for i in range(6)]
ITEM_IDS = [*KITCHEN, *GARDEN, "POST", "OOS"]
ROW = {item_id: row for row, item_id in enumerate(ITEM_IDS)}
VERSION_1 = "20260101T000000Z-aaaaaa"
VERSION_2 = "20260201T000000Z-bbbbbb"

READ_KEY = "read-key-0123456789"
WRITE_KEY = "write-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
API_KEYS = {
    READ_KEY: frozenset({"read"}),
    WRITE_KEY: frozenset({"write"}),
    ADMIN_KEY: frozenset({"admin"}),
}
READ = {"X-API-Key": READ_KEY}
WRITE = {"X-API-Key": WRITE_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


def _items() -> ItemTable:
    n = len(ITEM_IDS)
    categories = ["kitchen"] * 6 + ["garden"] * 6 + ["fees", "garden"]
    return ItemTable(
        item_ids=np.array(ITEM_IDS),
        titles=np.array([f"Item {item_id}" for item_id in ITEM_IDS]),
        categories=np.array(categories),
        prices=np.linspace(1.0, 14.0, n).astype(np.float32),
        in_stock=np.array([item_id != "OOS" for item_id in ITEM_IDS]),
        is_product=np.array([item_id != "POST" for item_id in ITEM_IDS]),
    )


def _item_factors() -> np.ndarray:
    factors = np.zeros((len(ITEM_IDS), 2), dtype=np.float32)
    for i in range(6):
        factors[ROW[f"K{i}"], 0] = 1.0 - 0.1 * i
        factors[ROW[f"G{i}"], 1] = 1.0 - 0.1 * i
    factors[ROW["POST"]] = [2.0, 2.0]  # would win every ranking if it were not blocked
    factors[ROW["OOS"]] = [0.0, 2.0]
    return factors


def _neighbours() -> tuple[np.ndarray, np.ndarray]:
    """Each item's neighbours: the others of its category, nearer index = more similar."""
    k = 5
    indices = np.full((len(ITEM_IDS), k), -1, dtype=np.int32)
    scores = np.zeros((len(ITEM_IDS), k), dtype=np.float32)
    for group in (KITCHEN, GARDEN):
        for i, item_id in enumerate(group):
            others = sorted((j for j in range(6) if j != i), key=lambda j: (abs(j - i), j))
            indices[ROW[item_id]] = [ROW[group[j]] for j in others]
            scores[ROW[item_id]] = [1.0 / (1 + abs(j - i)) for j in others]
    indices[ROW["G3"], 0] = ROW["OOS"]  # an out-of-stock neighbour must never be shown
    return indices, scores


def make_bundle(version: str = VERSION_1) -> ModelBundle:
    n_items = len(ITEM_IDS)
    popular_order = ["POST", "OOS", *GARDEN, *KITCHEN]
    popular = np.array([ROW[i] for i in popular_order], dtype=np.int32)
    history = sp.csr_matrix(
        (np.array([3.0, 2.0], np.float32), (np.array([0, 1]), np.array([ROW["K0"], ROW["G0"]]))),
        shape=(2, n_items),
    )
    last_days = sp.csr_matrix(
        (np.array([5.0, 9.0], np.float32), (np.array([0, 1]), np.array([ROW["K0"], ROW["G0"]]))),
        shape=(2, n_items),
    )
    indices, scores = _neighbours()
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    return ModelBundle(
        manifest=Manifest(
            version=version,
            created_at=as_of,
            data=DataWindow(source="synthetic", format="events", as_of=as_of),
            counts={"customers": 2, "items": n_items},
            metrics={"recall@10": 0.5},
        ),
        items=_items(),
        customer_ids=np.array(["kitchen-1", "garden-1"]),
        user_factors=np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        item_factors=_item_factors(),
        neighbour_indices=indices,
        neighbour_scores=scores,
        popular=popular,
        popular_scores=np.array(
            [100, 90, 50, 45, 40, 35, 30, 25, 5, 4, 3, 2, 1, 0.5], dtype=np.float32
        ),
        trending=np.array([ROW["G5"]], dtype=np.int32),
        trending_scores=np.array([1.0], dtype=np.float32),
        history=history,
        history_last_days=last_days,
        features=pd.DataFrame(
            {
                "customer_id": ["kitchen-1", "garden-1"],
                "recency_days": [5.0, 9.0],
                "frequency": [3, 1],
                "monetary": [42.5, 7.0],
                "nps": [9.0, np.nan],
                "segment": ["champions", "new"],
                "last_purchase_at": pd.to_datetime(["2025-12-27", "2025-12-23"]),
            }
        ),
    )


def retail_bundle_with_rankers(path: Path, as_of: str) -> ModelBundle:
    """The retail sample's bundle trained before ``as_of``, with both tasks' learned rankers
    (served whether or not they won, so the ranker path is what a test exercises)."""
    from recsys.io.loaders import load_interactions
    from training.build import build_bundle
    from training.ranker import train_rankers

    loaded = load_interactions(path)
    events = loaded.interactions
    bundle = build_bundle(events, loaded.catalog, as_of)
    rankers = train_rankers(events, loaded.catalog, bundle.manifest.data.as_of, None)
    bundle.ranker_onnx = dict(rankers.onnx)
    bundle.ranker_text = dict(rankers.text)
    bundle.manifest.params["ranker"] = rankers.report
    return bundle


def churn_onnx(raw_probability: float) -> bytes:
    """A churn model in the exported layout (``float32 (n, features)`` in, ``probabilities (n,
    2)`` out) whose raw churn probability is ``raw_probability`` for everyone."""
    width = len(CHURN_FEATURES)
    bias = float(np.log(raw_probability) - np.log1p(-raw_probability))
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["input", "weights"], ["margin0"]),
            onnx.helper.make_node("Add", ["margin0", "bias"], ["margin"]),
            onnx.helper.make_node("Sigmoid", ["margin"], ["churn"]),
            onnx.helper.make_node("Sub", ["one", "churn"], ["stay"]),
            onnx.helper.make_node("Concat", ["stay", "churn"], ["probabilities"], axis=1),
        ],
        "constant_churn",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, width])],
        [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2])],
        initializer=[
            onnx.numpy_helper.from_array(np.zeros((width, 1), np.float32), "weights"),
            onnx.numpy_helper.from_array(np.array([bias], np.float32), "bias"),
            onnx.numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@contextlib.contextmanager
def serve(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def get_json(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict = response.json()
    return body


def item_ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def write_live(client: redis.Redis, prefix: str, customer_id: str, record: LiveRecord) -> None:
    """Put a live record in the store, as event ingestion would: the record's fields set and
    its revision bumped in one ``MULTI`` (the answer cache's invalidation)."""
    pipe = client.pipeline(transaction=True)
    key = keys.customer_live(prefix, customer_id)
    pipe.hset(key, mapping=codec.encode_live(record))
    pipe.hincrby(key, keys.LIVE_REVISION, 1)
    pipe.execute()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels`` in a Prometheus exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


# -- customer intelligence: offers, CLV, RFM (issue 3) --------------------------------------

OFFERS_VERSION = "20260301T000000Z-cccccc"

#: The offers bundle's catalogue: every expected value below follows from recsys.decisions.offers.
OFFER_CATALOGUE: dict = {
    "contact_policy": {
        "caps": {
            "email": {"max_contacts": 1, "window_days": 7},
            "app": {"max_contacts": 2, "window_days": 7},
        },
        "cooldown_days": 14,
    },
    "offers": [
        {
            "offer_id": "favourites-10",
            "type": "discount",
            "title": "10% off your favourites",
            "discount_pct": 10,
            "conditions": [{"feature": "frequency", "op": ">=", "value": 2}],
            "value": 0.25,
            "value_basis": "avg_order_value",
            "cost": 0.2,
            "channels": ["email", "web", "app"],
            "needs_items": True,
            "max_items": 3,
        },
        {
            "offer_id": "cart-reminder",
            "type": "cart_reminder",
            "title": "Your cart is waiting",
            "value": 0.3,
            "value_basis": "avg_order_value",
            "cost": 0.05,
            "channels": ["email", "web", "app"],
            "needs_items": True,
        },
        {
            "offer_id": "loyalty-reward",
            "type": "loyalty_reward",
            "title": "A thank-you gift",
            "conditions": [
                {"feature": "frequency", "op": ">=", "value": 5},
                {"feature": "segment", "op": "in", "value": ["champions", "loyal"]},
            ],
            "value": 0.1,
            "value_basis": "clv",
            "cost": 5.0,
            "channels": ["email", "app"],
        },
        {
            "offer_id": "win-back-15",
            "type": "win_back",
            "title": "We miss you",
            "discount_pct": 15,
            "conditions": [{"feature": "churn_risk", "op": ">=", "value": 0.5}],
            "value": 0.3,
            "value_basis": "clv",
            "cost": 2.0,
            "channels": ["email", "sms"],
        },
        {
            "offer_id": "welcome-5",
            "type": "welcome",
            "title": "Welcome!",
            "discount_pct": 5,
            "conditions": [{"feature": "frequency", "op": "<=", "value": 1}],
            "value": 20.0,
            "cost": 1.0,
        },
        {
            "offer_id": "refer-a-friend",
            "type": "referral_invitation",
            "title": "Invite a friend",
            "conditions": [{"feature": "nps", "op": ">=", "value": 9}],
            "value": 60.0,
            "cost": 1.0,
            "channels": ["email", "app"],
        },
        {
            "offer_id": "review-request",
            "type": "review_request",
            "title": "Tell us in a review",
            "conditions": [{"feature": "orders_30d", "op": ">=", "value": 1}],
            "value": 5.0,
            "cost": 0.1,
            "marketing": False,
        },
        {
            "offer_id": "service-recovery",
            "type": "service_recovery",
            "title": "Let us make it right",
            "value": 40.0,
            "cost": 10.0,
            "channels": ["email", "web", "app", "call_centre"],
            "marketing": False,
        },
    ],
}
CLV_PARAMS = {
    "horizon_days": 365,
    "bgnbd": {"r": 0.8, "alpha": 40.0, "a": 0.3, "b": 3.0},
    "gamma_gamma": {"p": 6.0, "q": 4.0, "gamma": 15.0},
}
#: Quintile edges: recency under 10 days scores R=5, six orders or more F=5.
RFM_EDGES = {
    "n_bins": 5,
    "edges": {
        "recency_days": [10.0, 30.0, 60.0, 120.0],
        "frequency": [1.0, 2.0, 3.0, 5.0],
        "monetary": [20.0, 50.0, 100.0, 200.0],
    },
}

#: name: (factor vector, bought item, features); expected offers on email (k=3), best first:
#: loyal-1 refer-a-friend 8.0, favourites-10 1.7 (kitchen items), loyalty-reward 1.6;
#: detractor-1 service-recovery only; no-consent-1 review-request only; at-risk-1
#: win-back-15 3.4; cart-1 welcome-5 3.0 (and cart-reminder once a cart is open).
OFFER_CUSTOMERS: dict[str, tuple[list[float], str, dict]] = {
    "loyal-1": (
        [1.0, 0.0],
        "K0",
        {"frequency": 6, "avg_order_value": 50.0, "monetary": 300.0, "churn_risk": 0.1,
         "clv": 300.0, "nps": 10.0, "orders_90d": 2, "orders_30d": 0, "recency_days": 5.0,
         "segment": "champions", "journey_stage": "advocacy"},
    ),
    "detractor-1": (
        [0.0, 1.0],
        "G0",
        {"frequency": 4, "avg_order_value": 40.0, "monetary": 160.0, "churn_risk": 0.3,
         "clv": 200.0, "nps": 3.0, "orders_90d": 1, "orders_30d": 0, "recency_days": 20.0,
         "segment": "loyal", "journey_stage": "retention"},
    ),
    "no-consent-1": (
        [1.0, 0.0],
        "K1",
        {"frequency": 3, "avg_order_value": 30.0, "monetary": 90.0, "churn_risk": 0.2,
         "clv": 120.0, "orders_90d": 1, "orders_30d": 1, "recency_days": 3.0,
         "marketing_consent": False, "segment": "potential_loyalist",
         "journey_stage": "retention"},
    ),
    "at-risk-1": (
        [0.0, 1.0],
        "G1",
        {"frequency": 3, "avg_order_value": 20.0, "monetary": 60.0, "churn_risk": 0.8,
         "clv": 100.0, "orders_90d": 0, "orders_30d": 0, "recency_days": 80.0,
         "segment": "at_risk", "journey_stage": "at_risk"},
    ),
    "cart-1": (
        [0.0, 1.0],
        "G2",
        {"frequency": 1, "avg_order_value": 10.0, "monetary": 10.0, "churn_risk": 0.4,
         "clv": 30.0, "orders_90d": 1, "orders_30d": 0, "recency_days": 40.0,
         "segment": "about_to_sleep", "journey_stage": "purchase"},
    ),
}  # fmt: skip


def make_offers_bundle(version: str = OFFERS_VERSION) -> ModelBundle:
    """:func:`make_bundle`'s catalogue and item model with the :data:`OFFER_CUSTOMERS`, trained
    yesterday, and the customer intelligence of ``training/customers.py`` in ``extra``."""
    bundle = make_bundle(version)
    as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    as_of -= pd.Timedelta(days=1)
    names = list(OFFER_CUSTOMERS)
    rows = []
    for name in names:
        features = dict(OFFER_CUSTOMERS[name][2])
        last = as_of.replace(tzinfo=None) - pd.Timedelta(days=features["recency_days"])
        features.update(
            customer_id=name,
            first_purchase_at=last - pd.Timedelta(days=300),
            last_purchase_at=last,
            first_seen_at=last - pd.Timedelta(days=320),
            days_since_last_event=features["recency_days"],
            tenure_days=features["recency_days"] + 320,
            inter_purchase_mean_days=300 / max(features["frequency"] - 1, 1),
            inter_purchase_std_days=5.0,
            avg_repeat_order_value=features["avg_order_value"],
            marketing_consent=features.get("marketing_consent", True),
        )
        rows.append(features)
    n, n_items = len(names), len(ITEM_IDS)
    bought = [ROW[OFFER_CUSTOMERS[name][1]] for name in names]
    history = sp.csr_matrix(
        (np.full(n, 2.0, np.float32), (np.arange(n), np.array(bought))), shape=(n, n_items)
    )
    bundle.manifest = bundle.manifest.model_copy(
        update={"data": DataWindow(source="synthetic", format="events", as_of=as_of)}
    )
    bundle.customer_ids = np.array(names)
    bundle.user_factors = np.array([OFFER_CUSTOMERS[c][0] for c in names], dtype=np.float32)
    bundle.history = history
    bundle.history_last_days = history.copy()
    bundle.features = pd.DataFrame(rows)
    bundle.extra = {
        "offers": OFFER_CATALOGUE,
        "clv": CLV_PARAMS,
        "rfm": RFM_EDGES,
        "segment_rules": {},
        "journey_rules": {},
    }
    return bundle
