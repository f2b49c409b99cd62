"""One model version in memory, built once at load time: ranking arrays, the item id -> row
dict, the catalogue as Python lists (cheap to serialize), the popularity blend, the *base blocked
mask* (non-product, out of stock, hidden), the event path's fold-in and churn scorer. A request
takes one immutable :class:`Snapshot` (a model and its catalogue) and uses it to the end;
``serving.state`` swaps snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

import numpy as np

from recsys.bundle import Manifest, ModelBundle
from recsys.config import TrainingConfig, get_settings
from recsys.customers.churn import ChurnScorer, calibration_from_dict
from recsys.customers.clv import BetaGeoModel
from recsys.customers.live_update import OnlineModel
from recsys.errors import (
    ModelUnavailableError,
)
from recsys.ranking.foldin import FoldIn
from recsys.ranking.retrieval import ItemIndex
from recsys.ranking.scoring import RankingModel, popularity_prior
from serving.customer_models import LoadedCustomerModels
from serving.email_items import EmailItems, StoreFormat
from serving.rankers import Evaluator, ServedBy, served_rankers

log = logging.getLogger("recsys.serving")

#: Weight of the best-seller list against the trending list in ``/v1/popular`` and cold start.
POPULAR_SHARE = 0.6


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def churn_scorer(bundle: ModelBundle) -> ChurnScorer | None:
    """The bundle's ONNX churn model with its calibration, or None (no model, or no runtime)."""
    if bundle.churn_onnx is None:
        return None
    try:
        module = import_module("serving.churn_scorer")
    except ModuleNotFoundError as exc:
        if exc.name not in ("serving.churn_scorer", "onnxruntime"):
            raise
        log.warning("version %s has a churn model but no ONNX scorer: %s", bundle.version, exc)
        return None
    try:
        calibration = calibration_from_dict(bundle.extra.get("churn", {}).get("calibration"))
        scorer: ChurnScorer = module.OnnxChurnScorer(bundle.churn_onnx, calibration)
    except (ModelUnavailableError, ValueError, KeyError):
        # recommendations do not need it: serve the version, keep the batch churn_risk
        log.exception("version %s: the churn model cannot be used", bundle.version)
        return None
    return scorer


def _churn_alive(bundle: ModelBundle) -> BetaGeoModel | None:
    """The BG/NBD model behind the churn input's ``p_alive`` (training/churn.py), if stored."""
    params = bundle.extra.get("churn", {}).get("alive")
    try:
        return BetaGeoModel.from_params(params) if params else None
    except (KeyError, TypeError, ValueError):
        log.warning("version %s: unreadable churn alive model; p_alive is missing", bundle.version)
        return None


def _online_model(
    bundle: ModelBundle, item_factors: np.ndarray, item_ids: list[str], row_of: dict[str, int]
) -> OnlineModel:
    """What event ingestion needs of this version, built once at load time."""
    params = {**TrainingConfig().model_dump(), **bundle.manifest.params.get("training", {})}
    prices = np.asarray(bundle.items.prices, dtype=np.float64)
    products = np.asarray(bundle.items.is_product, dtype=bool)

    def price_of(item_id: str) -> float | None:
        row = row_of.get(item_id)
        price = float(prices[row]) if row is not None else float("nan")
        return price if np.isfinite(price) else None

    def is_product(item_id: str) -> bool:
        row = row_of.get(item_id)
        return True if row is None else bool(products[row])

    return OnlineModel(
        version=bundle.version,
        as_of=_naive_utc(bundle.manifest.data.as_of),
        item_ids=item_ids,
        row_of=row_of,
        fold=FoldIn.from_factors(
            item_factors, float(params["regularization"]), float(params["alpha"])
        ),
        churn=churn_scorer(bundle),
        churn_alive=_churn_alive(bundle),
        price_of=price_of,
        is_product=is_product,
    )


def value_counts(features: Any, column: str) -> dict[str, int]:
    """How many rows of the features table hold each value of ``column``, most first (empty
    when the bundle has no such column)."""
    if features is None or column not in getattr(features, "columns", ()):
        return {}
    counts = features[column].dropna().astype(str).value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), item[0]))
    return {str(name): int(n) for name, n in ordered}


@dataclass(frozen=True)
class ModelState:
    """One model version, ready to answer (no per-customer data: that lives in the store)."""

    manifest: Manifest
    loaded_at: datetime
    ranking: RankingModel
    item_ids: list[str]
    row_of: dict[str, int]
    is_product: np.ndarray  # bool (n_items,)
    base_titles: np.ndarray  # U, the bundle's catalogue before overrides
    base_categories: np.ndarray
    base_prices: np.ndarray
    base_in_stock: np.ndarray
    popular_score: np.ndarray  # f4 (n_items,): best sellers blended with trending, in [0, 1]
    popular_is_trending: np.ndarray  # bool: the trending part dominates
    n_customers: int
    online: OnlineModel  # the event path's view: fold-in (YᵀY + λI once), churn scorer
    customer_models: (
        LoadedCustomerModels  # offer catalogue, RFM, CLV, rules (serving.customer_models)
    )
    customer_ids: np.ndarray  # U, sorted and unique: the customers the bundle was trained on
    #: The trained customers by ``segment`` and by ``journey_stage`` (``GET /v1/overview``).
    segment_counts: dict[str, int]
    stage_counts: dict[str, int]
    #: candidate retrieval of the page view; None (exact scoring) below
    #: ``serving.retrieval_min_items`` items
    retrieval: ItemIndex | None = None
    #: how each task's learned ranker is evaluated (``serving.rankers``); empty: none served
    ranker_evaluators: dict[str, ServedBy] = field(default_factory=dict)
    #: the offers' items ranked at training (``serving.email_items``); None: ranked here
    email_items: EmailItems | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        retrieval_min_items: int | None = None,
        ranker_evaluator: Evaluator | None = None,
        store_format: StoreFormat | None = None,
    ) -> ModelState:
        """``retrieval_min_items``: build an :class:`ItemIndex` from this many items on
        (default: the setting ``serving.retrieval_min_items``); ``ranker_evaluator``: how the
        learned rankers run (default: the setting ``serving.ranker_evaluator``);
        ``store_format``: how the store holds the records, for the bundle's precomputed
        offer items (None: not used)."""
        items = bundle.items
        n_items = len(items)
        settings = get_settings().serving
        if retrieval_min_items is None:
            retrieval_min_items = settings.retrieval_min_items
        evaluator = ranker_evaluator or settings.ranker_evaluator
        served = served_rankers(bundle, evaluator, settings.ranker_cache)
        popular = popularity_prior(bundle.popular, bundle.popular_scores, n_items)
        trending = popularity_prior(bundle.trending, bundle.trending_scores, n_items)
        best, trend = POPULAR_SHARE * popular, (1.0 - POPULAR_SHARE) * trending
        item_ids = items.item_ids.astype(str).tolist()
        row_of = {item_id: row for row, item_id in enumerate(item_ids)}
        ranking = RankingModel.from_bundle(bundle, rankers=served.rankers)
        customer_ids = np.unique(np.asarray(bundle.customer_ids).astype(str))
        return cls(
            manifest=bundle.manifest,
            loaded_at=datetime.now(UTC),
            ranking=ranking,
            item_ids=item_ids,
            row_of=row_of,
            is_product=np.asarray(items.is_product, dtype=bool),
            base_titles=items.titles.astype(str),
            base_categories=items.categories.astype(str),
            base_prices=np.round(np.asarray(items.prices, dtype=np.float64), 2),  # f4 -> cents
            base_in_stock=np.asarray(items.in_stock, dtype=bool),
            popular_score=(best + trend).astype(np.float32),
            popular_is_trending=trend > best,
            n_customers=len(bundle.customer_ids),
            online=_online_model(bundle, ranking.item_factors, item_ids, row_of),
            customer_models=LoadedCustomerModels.from_extra(bundle.extra, bundle.version),
            customer_ids=customer_ids,
            retrieval=(
                ItemIndex.build(ranking.item_factors) if n_items >= retrieval_min_items else None
            ),
            segment_counts=value_counts(bundle.features, "segment"),
            stage_counts=value_counts(bundle.features, "journey_stage"),
            ranker_evaluators=served.evaluators,
            email_items=(
                None
                if store_format is None
                else EmailItems.from_bundle(bundle, store_format, customer_ids)
            ),
        )

    def rows_of(self, item_ids: Any) -> np.ndarray:
        """Rows of the known ids among ``item_ids`` (a short list; unknown ids are dropped)."""
        row_of = self.row_of
        return np.fromiter((row_of[i] for i in item_ids if i in row_of), dtype=np.int64)


@dataclass(frozen=True)
class ItemCatalogue:
    """The bundle's catalogue with the store's overrides applied, at one revision."""

    revision: int
    titles: list[str]
    categories: list[str]
    prices: list[float]
    in_stock: np.ndarray
    hidden: np.ndarray
    blocked: np.ndarray  # never recommend: non-product, out of stock or hidden
    category_codes: np.ndarray  # i4 per item
    code_of_category: dict[str, int]  # casefolded category -> code
    #: the model's precomputed offer items assume exactly this catalogue's blocked set
    email_items_valid: bool = False

    @classmethod
    def build(
        cls, model: ModelState, overrides: Mapping[str, Mapping[str, Any]], revision: int
    ) -> ItemCatalogue:
        titles = model.base_titles.astype(object)
        categories = model.base_categories.astype(object)
        prices = model.base_prices.copy()
        in_stock = model.base_in_stock.copy()
        hidden = np.zeros(model.n_items, dtype=bool)
        for item_id, fields in overrides.items():  # load time: one entry per changed item
            row = model.row_of.get(item_id)
            if row is None:
                continue
            titles[row] = str(fields.get("title", titles[row]))
            categories[row] = str(fields.get("category", categories[row]))
            prices[row] = float(fields.get("price", prices[row]))
            in_stock[row] = bool(fields.get("in_stock", in_stock[row]))
            hidden[row] = bool(fields.get("hidden", False))
        folded = np.char.lower(categories.astype(str))
        names, codes = np.unique(folded, return_inverse=True)
        blocked = ~model.is_product | ~in_stock | hidden
        email = model.email_items
        return cls(
            revision=revision,
            titles=titles.tolist(),
            categories=categories.tolist(),
            prices=prices.tolist(),
            in_stock=in_stock,
            hidden=hidden,
            blocked=blocked,
            category_codes=codes.astype(np.int32).ravel(),
            code_of_category={str(name): code for code, name in enumerate(names.tolist())},
            email_items_valid=email is not None and np.array_equal(email.blocked, blocked),
        )

    def outside_category(self, category: str) -> np.ndarray:
        """True for every item not in ``category`` (case-insensitive; unknown: all True)."""
        code = self.code_of_category.get(category.lower())
        if code is None:
            return np.ones(self.category_codes.shape[0], dtype=bool)
        return self.category_codes != code

    def describe(self, row: int) -> dict[str, Any]:
        return {
            "title": self.titles[row],
            "category": self.categories[row],
            "price": self.prices[row],
            "in_stock": bool(self.in_stock[row]),
            "hidden": bool(self.hidden[row]),
            "recommendable": not bool(self.blocked[row]),
        }


@dataclass(frozen=True)
class Snapshot:
    model: ModelState
    catalog: ItemCatalogue

    @property
    def version(self) -> str:
        return self.model.version
