"""Response bodies that describe: a customer (profile), the customer base (overview) and the
served model version (its training data, metrics and sample ids).

Every field carries a description and an example for ``/openapi.json`` (see
:mod:`serving.models`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.models import (
    CUSTOMER_ID_EXAMPLE,
    VERSION_DESCRIPTION,
    VERSION_EXAMPLE,
    UtcDateTime,
)

_SEGMENTS = (
    "the RFM segment: ``champions``, ``loyal``, ``potential_loyalist``, ``new``, "
    "``promising``, ``need_attention``, ``about_to_sleep``, ``at_risk``, ``cant_lose``, "
    "``hibernating``, ``lost``, or ``prospect`` (never bought)"
)
_STAGES = (
    "the journey stage: ``awareness``, ``consideration``, ``purchase``, ``retention``, "
    "``advocacy``, ``at_risk`` or ``churned``"
)
_CHURN = (
    "the probability (0 to 1) that the customer buys nothing in the next 90 days "
    "(calibrated); null: not scored (no churn model, or the customer never bought)"
)
_NULL = "; null: not known"
_FEATURES_EXAMPLE = {
    "recency_days": 64.5,
    "frequency": 3,
    "monetary": 2836.6,
    "avg_order_value": 952.92,
    "tenure_days": 191.46,
    "clv": 3034.36,
    "churn_risk": 0.1602,
    "segment": "need_attention",
    "journey_stage": "retention",
    "nps": 9,
    "csat": None,
    "last_purchase_at": "2011-06-28T11:44:00",
    "orders_90d": 1,
    "marketing_consent": True,
}


class CustomerFeatures(BaseModel):
    """The features the contract names; any other feature the record holds is passed through
    (``orders_30d``, ``spend_90d``, ``return_rate``, ``marketing_consent``, ``p_alive``, ...).
    Money is in the shop's currency (pounds sterling in the UCI Online Retail data)."""

    model_config = ConfigDict(extra="allow")

    recency_days: float | None = Field(
        default=None,
        description="days from the last purchase to the feature time" + "; null: never bought",
        examples=[64.5],
    )
    frequency: float | None = Field(
        default=None, description="distinct orders" + _NULL, examples=[3]
    )
    monetary: float | None = Field(
        default=None,
        description="net spend: product purchases minus product returns" + _NULL,
        examples=[2836.6],
    )
    avg_order_value: float | None = Field(
        default=None,
        description="mean product value of an order; null: no order",
        examples=[952.92],
    )
    tenure_days: float | None = Field(
        default=None,
        description="days from the customer's first event of any kind" + _NULL,
        examples=[191.46],
    )
    clv: float | None = Field(
        default=None,
        description="customer lifetime value: the expected spend of the next 365 days "
        "(BG/NBD purchases times Gamma-Gamma order value; 0 for one who never bought)" + _NULL,
        examples=[3034.36],
    )
    churn_risk: float | None = Field(default=None, description=_CHURN, examples=[0.1602])
    segment: str | None = Field(default=None, description=_SEGMENTS + _NULL, examples=["loyal"])
    journey_stage: str | None = Field(
        default=None, description=_STAGES + _NULL, examples=["retention"]
    )
    nps: float | None = Field(
        default=None, description="the latest NPS answer, 0 to 10; null: none", examples=[9]
    )
    csat: float | None = Field(
        default=None, description="the latest CSAT answer, 1 to 5; null: none", examples=[4]
    )
    last_purchase_at: str | None = Field(
        default=None,
        description="when the customer last bought, ISO 8601 in UTC (no zone written); "
        "null: never bought",
        examples=["2011-06-28T11:44:00"],
    )


class CustomerProfile(BaseModel):
    """One customer: value, segment, journey stage, churn risk, satisfaction and live state."""

    customer_id: str = Field(description="the customer asked about", examples=[CUSTOMER_ID_EXAMPLE])
    features: CustomerFeatures = Field(
        description="the customer's features: the trained ones, updated by the events since",
        examples=[_FEATURES_EXAMPLE],
    )
    segment: str | None = Field(description=_SEGMENTS + _NULL, examples=["need_attention"])
    journey_stage: str | None = Field(description=_STAGES + _NULL, examples=["retention"])
    churn_risk: float | None = Field(description=_CHURN, examples=[0.1602])
    recent_views: list[str] = Field(
        description="item ids the customer viewed lately, most recent first (from events)",
        examples=[["85123A", "22423"]],
    )
    cart: list[str] = Field(
        description="item ids in the customer's cart now (from events)", examples=[["85099B"]]
    )
    in_model: bool = Field(
        description="whether the served model version was trained on this customer "
        "(false: known from events only)",
        examples=[True],
    )
    model_version: str | None = Field(
        description=VERSION_DESCRIPTION + "; null: no model loaded", examples=[VERSION_EXAMPLE]
    )


class TrainingData(BaseModel):
    """The data a model version was trained on."""

    source: str = Field(
        description="the events file, as given to ``recsys train``",
        examples=["online_retail_2010-12_2011-08.csv.gz"],
    )
    format: str = Field(
        description="the file's format: ``events`` or ``online-retail``",
        examples=["online-retail"],
    )
    start: UtcDateTime | None = Field(
        description="the first event's time; null: no events", examples=["2010-12-01T08:26:00Z"]
    )
    end: UtcDateTime | None = Field(
        description="the last event's time; null: no events", examples=["2011-08-31T17:45:00Z"]
    )
    as_of: UtcDateTime = Field(
        description="the cut-off: only events strictly before it were used",
        examples=["2011-09-01T00:00:00Z"],
    )


class ModelInfo(BaseModel):
    """The active model version: when and on what data it was trained, and its metrics."""

    version: str = Field(description=VERSION_DESCRIPTION, examples=[VERSION_EXAMPLE])
    created_at: UtcDateTime = Field(
        description="when the version was trained", examples=["2026-12-04T21:44:30.688785Z"]
    )
    loaded_at: UtcDateTime = Field(
        description="when this server process loaded it", examples=["2026-12-04T21:46:27.672888Z"]
    )
    trained_on: TrainingData = Field(
        description="the data it was trained on",
        examples=[
            {
                "source": "online_retail_2010-12_2011-08.csv.gz",
                "format": "online-retail",
                "start": "2010-12-01T08:26:00Z",
                "end": "2011-08-31T17:45:00Z",
                "as_of": "2011-09-01T00:00:00Z",
            }
        ],
    )
    counts: dict[str, int] = Field(
        description="sizes of the training data by name (events, customers, items, products, "
        "purchase rows, ...)",
        examples=[{"events": 84828, "customers": 1086, "items": 3225, "products": 3213}],
    )
    metrics: dict[str, Any] = Field(
        description="offline metrics of the version: ``offline`` (ranking on a held-out "
        "window: NDCG, recall, coverage at k, per task and baseline) and ``churn`` (ROC-AUC, "
        "Brier, lift of the churn model and its baselines)",
        examples=[
            {
                "offline": {"tasks": {"discovery": {"served": {"ndcg@10": 0.1225}}}},
                "churn": {"model": {"roc_auc": 0.7104, "brier": 0.2144}},
            }
        ],
    )
    params: dict[str, Any] = Field(
        description="the training parameters (ALS factors and regularization, blend weights, "
        "neighbours, ...), as the version was built",
        examples=[{"training": {"factors": 128, "regularization": 20.0, "iterations": 15}}],
    )
    training_seconds: float | None = Field(
        description="how long the training took, in seconds; null: not recorded",
        examples=[15.5],
    )
    n_items: int = Field(description="items in the version's catalogue", examples=[3225])
    n_customers: int = Field(description="customers the version was trained on", examples=[1086])
    ranker_evaluator: dict[str, Literal["native", "onnx", "generator"]] = Field(
        description="how each task's learned ranker is evaluated in this process: ``native`` "
        "(the LightGBM model compiled to machine code), ``onnx`` (onnxruntime, for versions "
        "trained without the model text or where compiling failed) or ``generator`` (training's "
        "validation guard found a single generator, popularity or trend, better than the "
        "ranker and the blend: the manifest's ``served`` names it); a task left out: the blend "
        "ranks it",
        examples=[{"all": "native", "discovery": "native"}],
    )


class Reloaded(BaseModel):
    """The outcome of ``POST /v1/admin/reload``."""

    previous_version: str | None = Field(
        description="the version served before; null: none was loaded",
        examples=["20261101T020000Z-9f8e7d"],
    )
    version: str = Field(description="the version served now", examples=[VERSION_EXAMPLE])
    changed: bool = Field(
        description="false: the newest version was already the one served", examples=[True]
    )


class Overview(BaseModel):
    """The customer base at a glance, as the served model version saw it when trained."""

    model_version: str = Field(description="the served model version", examples=[VERSION_EXAMPLE])
    as_of: UtcDateTime = Field(
        description="the end of the training data window", examples=["2011-09-01T00:00:00Z"]
    )
    n_customers: int = Field(description="customers the version was trained on", examples=[4338])
    n_items: int = Field(description="items in the version's catalogue", examples=[3665])
    segments: dict[str, int] = Field(
        description="trained customers by RFM segment, most first",
        examples=[{"champions": 812, "at_risk": 430}],
    )
    journey_stages: dict[str, int] = Field(
        description="trained customers by journey stage, most first",
        examples=[{"retention": 1800, "at_risk": 600}],
    )


class SampleIds(BaseModel):
    """Known ids of the active model version, for load tests and smoke checks of a server."""

    model_version: str = Field(
        description="the version the ids come from", examples=[VERSION_EXAMPLE]
    )
    customer_ids: list[str] = Field(
        description="customers the version was trained on (a uniform random sample)",
        examples=[["17850", "13047"]],
    )
    item_ids: list[str] = Field(
        description="products of the catalogue (a uniform random sample)",
        examples=[["85123A", "22423"]],
    )
    popular_item_ids: list[str] = Field(
        description="the best-selling and trending products, best first", examples=[["85123A"]]
    )


_BATCH_EXAMPLE = {
    "features": {"recency_days": 64.5, "frequency": 3, "monetary": 2836.6},
    "user_vector": [0.0123, -0.0456],
    "history_items": [12, 407],
    "history_counts": [2.0, 1.0],
    "history_last_days": [64.5, 120.0],
}
_LIVE_EXAMPLE = {
    "recent_views": ["85123A"],
    "cart": ["22423"],
    "purchased": {"84879": 1.0},
    "disliked": [],
    "features": {},
    "user_vector": None,
    "user_vector_version": None,
    "other_fields": {},
}
_EVENT_EXAMPLE = {
    "customer_id": CUSTOMER_ID_EXAMPLE,
    "event_type": "view",
    "item_id": "85123A",
    "timestamp": "2011-08-01T10:15:00+00:00",
}


class CustomerDataExport(BaseModel):
    """Everything the online store holds about one customer (a data subject access request):
    the records of every loaded model version, the live record, contacts, applied event ids and
    the customer's events in the durable stream. An unknown customer gets the same shape, empty."""

    model_config = ConfigDict(extra="allow")

    customer_id: str = Field(
        description="the customer the export is about", examples=[CUSTOMER_ID_EXAMPLE]
    )
    erased: bool = Field(
        description="whether the customer was erased (their later events are ignored)",
        examples=[False],
    )
    batch: dict[str, dict[str, Any]] = Field(
        description="per model version, the training-time record: features, factor vector, "
        "purchase history (item rows of that version, order counts, days since the last order)",
        examples=[{VERSION_EXAMPLE: _BATCH_EXAMPLE}],
    )
    live: dict[str, Any] | None = Field(
        description="the record kept from events: recent views, cart, purchases since training, "
        "dislikes, online features, folded-in vector, and the online state under "
        "``other_fields``; null: no event was ever recorded",
        examples=[_LIVE_EXAMPLE],
    )
    contacts: dict[str, float] = Field(
        description="offers sent to the customer: offer id -> Unix time of the last send",
        examples=[{"winback-10": 1312185600.0}],
    )
    event_ids: list[str] = Field(
        description="ids of the customer's applied events (the idempotency window)",
        examples=[["evt-0001"]],
    )
    other: dict[str, Any] = Field(
        description="any further key of the customer, by its name (empty in this version)",
        examples=[{}],
    )
    events: list[dict[str, Any]] = Field(
        description="the customer's events in the durable stream, oldest first, in the events "
        "file's columns (text values)",
        examples=[[_EVENT_EXAMPLE]],
    )
