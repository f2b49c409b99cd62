"""The interaction table → a model bundle in memory: every array, the manifest, no I/O.

:func:`build_bundle` is what :mod:`training.pipeline` (the file in, a version out) and
:mod:`training.evaluate` (time splits) both train with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from recsys.bundle import DataWindow, Manifest, ModelBundle, new_version
from recsys.config import TrainingConfig
from recsys.errors import InvalidRequestError
from recsys.ranking.scoring import RankingParams
from training.als import fit_als
from training.customers import TrainedCustomerModels, train_customer_models
from training.interactions import (
    build_purchase_matrices,
    buyer_keys,
    excluded_rows,
    index_of,
    item_table,
    rows_before,
    sorted_ids,
)
from training.neighbours import cooccurrence_neighbours
from training.popularity import RECENT_DAYS, compute_popularity
from training.signals import item_signals

log = logging.getLogger(__name__)

#: Shrinkage of the co-purchase cosine (tuned with the rest; see benchmarks/quality.py).
NEIGHBOUR_SHRINK = 2.0
#: Best sellers are counted over this many days before as_of (None: the whole window);
#: 30 days beat 60, 90, 180 and everything on the validation split.
POPULAR_WINDOW_DAYS: float | None = 30.0


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of :func:`build_bundle` beyond ``TrainingConfig`` (tuned constants by default)."""

    neighbour_shrink: float = NEIGHBOUR_SHRINK
    popular_window_days: float | None = POPULAR_WINDOW_DAYS
    with_features: bool = True
    with_churn: bool = True
    with_signals: bool = True  # the two-stage ranking's item signals (EASE, rhythm, ...)


def resolve_as_of(interactions: pd.DataFrame, as_of: Any) -> pd.Timestamp:
    """``as_of`` as a naive Timestamp; None → the midnight after the last event."""
    if as_of is not None:
        ts = pd.Timestamp(as_of)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    if interactions.empty:
        raise InvalidRequestError("no events to train on")
    last = pd.Timestamp(interactions["timestamp"].max())
    return (last + pd.Timedelta(seconds=1)).ceil("D")


def _py_datetime(ts: Any) -> datetime | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime()


def build_bundle(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    as_of: Any,
    config: TrainingConfig | None = None,
    *,
    ranking: RankingParams | None = None,
    exclude_customers: Container[str] = frozenset(),
    source: str = "memory",
    fmt: str = "events",
    load_report: dict[str, Any] | None = None,
    options: BuildOptions | None = None,
) -> ModelBundle:
    """Every array of a bundle from the interaction table, using only events before ``as_of``."""
    config = config or TrainingConfig()
    ranking = ranking or RankingParams()
    options = options or BuildOptions()
    started = time.perf_counter()
    as_of = resolve_as_of(interactions, as_of)
    events = rows_before(interactions, as_of)
    excluded = 0
    if exclude_customers:
        dropped = excluded_rows(interactions["customer_id"], exclude_customers)
        excluded = int(interactions["customer_id"][dropped].nunique())
        events = events.loc[~excluded_rows(events["customer_id"], exclude_customers)]
    if events.empty:
        raise InvalidRequestError(f"no events before {as_of:%Y-%m-%d %H:%M:%S} to train on")

    item_ids = sorted_ids(events["item_id"], *([] if catalog is None else [catalog["item_id"]]))
    customer_ids = sorted_ids(events["customer_id"])
    items = item_table(item_ids, events, catalog)
    purchases = build_purchase_matrices(events, customer_ids, item_ids, as_of)
    if purchases.orders.nnz == 0:
        raise InvalidRequestError(
            f"no product purchases by known customers before {as_of:%Y-%m-%d}: nothing to learn"
        )
    timings: dict[str, float] = {}
    with threadpool_limits(1, "blas"):
        t = time.perf_counter()
        factors = fit_als(purchases.orders, config)
        timings["als_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        neighbours = cooccurrence_neighbours(
            purchases.orders, config.neighbours, shrink=options.neighbour_shrink
        )
        timings["neighbours_seconds"] = time.perf_counter() - t

    bought = events.loc[
        (events["event_type"] == "purchase")
        & events["item_id"].notna()
        & events["is_product"].astype(bool)
    ]
    popularity = compute_popularity(
        buyer_keys(bought, customer_ids),
        index_of(item_ids, bought["item_id"]),
        bought["timestamp"].to_numpy(dtype="datetime64[ns]"),
        len(item_ids),
        as_of,
        config.trending_days,
        window_days=options.popular_window_days,
    )

    signals: dict[str, np.ndarray] = {}
    if options.with_signals:
        t = time.perf_counter()
        with threadpool_limits(1, "blas"):
            fitted = item_signals(
                events,
                customer_ids,
                item_ids,
                items.is_product,
                items.prices,
                purchases.orders,
                popularity,
            )
        signals = fitted.to_arrays()
        timings["signals_seconds"] = time.perf_counter() - t

    features = pd.DataFrame({"customer_id": pd.Series(customer_ids, dtype=object)})
    churn_onnx: bytes | None = None
    extra: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if options.with_features:
        t = time.perf_counter()
        customers = _customer_models(events, as_of, config, catalog, options.with_churn)
        features, extra, metrics = customers.features, customers.extra, customers.metrics
        churn_onnx = customers.churn.onnx_bytes if customers.churn else None
        timings["customer_intelligence_seconds"] = time.perf_counter() - t

    manifest = Manifest(
        version=new_version(),
        created_at=datetime.now().astimezone(),
        data=DataWindow(
            source=source,
            format=fmt,
            start=_py_datetime(events["timestamp"].min()),
            end=_py_datetime(events["timestamp"].max()),
            as_of=as_of.to_pydatetime(),
            load_report=load_report or {},
        ),
        counts={
            "events": int(len(events)),
            "customers": int(len(customer_ids)),
            "items": int(len(item_ids)),
            "products": int(items.is_product.sum()),
            "purchase_rows": int(len(bought)),
            "cf_pairs": int(purchases.orders.nnz),
            "cf_customers": int(np.count_nonzero(np.diff(purchases.orders.indptr))),
            "cf_items": int(
                np.count_nonzero(np.bincount(purchases.orders.indices, minlength=len(item_ids)))
            ),
            "excluded_customers": excluded,  # erased customers present in the data
            "feature_rows": int(len(features)),
        },
        params={
            "training": config.model_dump(),
            "ranking": ranking.to_dict(),
            "als": {
                "weights": "distinct orders per (customer, item) of products, net of returns",
                "confidence": "alpha * weight (implicit 0.7 convention, as recsys.ranking.foldin)",
                "history_counts_are_weights": True,
            },
            "neighbours": {
                "method": "shrunk cosine of buyer sets",
                "shrink": options.neighbour_shrink,
                "k": config.neighbours,
            },
            "popularity": {
                "popular": "distinct customers",
                "window_days": options.popular_window_days,
                "trending_days": config.trending_days,
                "recent_days": RECENT_DAYS,  # the ranker's popularity_recent
            },
            "timings": {k: round(v, 3) for k, v in timings.items()},
        },
        metrics=metrics,
        training_seconds=time.perf_counter() - started,
    )
    return ModelBundle(
        manifest=manifest,
        items=items,
        customer_ids=customer_ids.astype(str),
        user_factors=factors.user_factors,
        item_factors=factors.item_factors,
        neighbour_indices=neighbours.indices,
        neighbour_scores=neighbours.scores,
        popular=popularity.popular,
        popular_scores=popularity.popular_scores,
        trending=popularity.trending,
        trending_scores=popularity.trending_scores,
        history=purchases.orders,
        history_last_days=purchases.last_days,
        features=features,
        churn_onnx=churn_onnx,
        extra=extra,
        signals=signals,
    )


def _customer_models(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    config: TrainingConfig,
    catalog: pd.DataFrame | None,
    with_churn: bool,
) -> TrainedCustomerModels:
    """Features, churn model, CLV, segments and journey stages (``training.customers``); the
    churn model only when there is enough history for it (else logged and recorded)."""
    first = pd.Timestamp(events["timestamp"].min())
    needed = pd.Timedelta(days=2 * config.churn_horizon_days)
    enough = as_of - first >= needed  # a labelled window and a held-out one need two horizons
    if with_churn and not enough:
        log.warning(
            "no churn model in this version: %d days of history; churn needs at least %d",
            (as_of - first).days,
            needed.days,
        )
    return train_customer_models(
        events,
        as_of,
        catalog,
        horizon_days=config.churn_horizon_days,
        with_churn=with_churn and enough,
        backtest_customers=config.backtest_customers,
        seed=config.random_state,
    )
