"""The hot path's logic: a snapshot, a customer's state and a query in, ranked items out.

No HTTP and no I/O: the route reads the store once and calls :func:`recommend`. Everything is
numpy over all items; the only Python loops run over the customer's short lists (cart, recent
views, live purchases, excluded ids) and over the ``k`` items returned.

* **personalized**: the customer has a factor vector or a purchase history;
* **cold_start**: the store knows nothing useful of them: popularity plus the context;
* **fallback**: the store could not be read (or no model is loaded): popularity plus whatever
  context the request itself carries (the product on the page).

Never recommended: non-product codes, out-of-stock and hidden items (the catalogue's base mask),
excluded and disliked items, items outside the requested category, the product being viewed, the
cart's items on the cart page, and, with ``exclude_purchased``, what the customer bought.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.errors import NotFoundError
from recsys.ranking.batch import rank_customer
from recsys.ranking.scoring import top_k
from recsys.store import CustomerState, LiveRecord
from serving.model_state import ItemCatalogue, ModelState, Snapshot

RECENT_VIEWS_USED = 10
RECENT_VIEW_DECAY = 0.8  # weight of the i-th most recent view: DECAY ** i
_EMPTY_I8 = np.zeros(0, dtype=np.int64)
_EMPTY_F4 = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class RecommendationQuery:
    k: int = 10
    context: str = "home"
    item_id: str | None = None
    exclude_purchased: bool = True
    exclude: tuple[str, ...] = ()
    category: str | None = None


@dataclass(frozen=True)
class Ranked:
    rows: np.ndarray  # i4
    scores: np.ndarray  # f4
    reasons: list[str]


@dataclass(frozen=True)
class Profile:
    """What :func:`recommend` takes from a customer's state, mapped to this model's rows."""

    user_vector: np.ndarray | None
    history_items: np.ndarray  # i8 rows (batch history, then live purchases)
    history_counts: np.ndarray
    history_age_days: np.ndarray

    @property
    def personal(self) -> bool:
        return self.user_vector is not None or self.history_items.size > 0


def profile_of(model: ModelState, customer: CustomerState | None) -> Profile:
    if customer is None:
        return Profile(None, _EMPTY_I8, _EMPTY_F4, _EMPTY_F4)
    batch, live = customer.batch, customer.live
    vector = live.user_vector
    if live.user_vector_version is not None and live.user_vector_version != model.version:
        vector = None  # folded against another version's factors: meaningless in this one
    if vector is None and batch is not None:
        vector = batch.user_vector
    if vector is not None and vector.shape != (model.ranking.item_factors.shape[1],):
        vector = None  # a vector of another model's factor space: do not use it
    if batch is None:
        items, counts, ages = _EMPTY_I8, _EMPTY_F4, _EMPTY_F4
    else:
        items, counts, ages = batch.history_items, batch.history_counts, batch.history_last_days
    if not live.purchased:  # the batch history alone (the same values as joined with nothing)
        return Profile(
            vector,
            np.asarray(items, dtype=np.int64),
            np.asarray(counts, dtype=np.float32),
            np.asarray(ages, dtype=np.float32),
        )
    live_rows = model.rows_of(live.purchased)
    live_counts = np.fromiter(
        (live.purchased[model.item_ids[r]] for r in live_rows.tolist()), dtype=np.float32
    )
    return Profile(
        vector,
        np.concatenate([np.asarray(items, dtype=np.int64), live_rows]),
        np.concatenate([np.asarray(counts, dtype=np.float32), live_counts]),
        np.concatenate([np.asarray(ages, dtype=np.float32), np.zeros_like(live_counts)]),
    )


def context_of(
    model: ModelState, live: LiveRecord, query: RecommendationQuery
) -> tuple[np.ndarray, np.ndarray]:
    """The context items (rows) and their weights for the page the customer is on."""
    if query.context == "product":
        ids: tuple[str, ...] = (query.item_id,) if query.item_id else ()
    elif query.context == "cart":
        ids = live.cart
    elif query.context == "home":
        ids = live.recent_views[:RECENT_VIEWS_USED]
    else:  # email: the customer's own history speaks
        ids = ()
    if not ids:
        return _EMPTY_I8, _EMPTY_F4
    rows = model.rows_of(ids)
    weights = (RECENT_VIEW_DECAY ** np.arange(rows.size)).astype(np.float32)
    if query.context != "home":
        weights[:] = 1.0
    return rows, weights


def blocked_mask(
    snapshot: Snapshot,
    query: RecommendationQuery,
    profile: Profile,
    live: LiveRecord,
    context_rows: np.ndarray,
) -> np.ndarray:
    model, catalog = snapshot.model, snapshot.catalog
    blocked = catalog.blocked.copy()
    if query.category is not None:
        blocked |= catalog.outside_category(query.category)
    if query.exclude_purchased:
        blocked[profile.history_items] = True
    blocked[model.rows_of(query.exclude)] = True
    blocked[model.rows_of(live.disliked)] = True
    if query.context in ("product", "cart"):
        blocked[context_rows] = True  # the product on the page, what is already in the cart
    return blocked


def recommend(
    snapshot: Snapshot, customer: CustomerState | None, query: RecommendationQuery
) -> tuple[str, Ranked]:
    """The strategy used and the ranked items; ``customer`` None means the store was not read."""
    model = snapshot.model
    live = customer.live if customer is not None else LiveRecord()
    profile = profile_of(model, customer)
    context_rows, context_weights = context_of(model, live, query)
    cf = None  # exact, unless the catalogue is large enough to have a retrieval index
    if model.retrieval is not None and profile.user_vector is not None:
        cf = model.retrieval.cf_scores(model.ranking.item_factors, profile.user_vector)
    arguments = (
        profile.user_vector,
        profile.history_items,
        profile.history_counts,
        profile.history_age_days,
        context_rows,
        context_weights,
        cf,
    )
    blocked = blocked_mask(snapshot, query, profile, live, context_rows)
    task = "discovery" if query.exclude_purchased else "all"
    top = rank_customer(model.ranking, arguments, query.k, blocked, task)
    strategy = (
        "fallback" if customer is None else "personalized" if profile.personal else "cold_start"
    )
    return strategy, Ranked(top.rows, top.scores, top.reasons)


def similar(snapshot: Snapshot, item_id: str, k: int) -> Ranked:
    """Items bought together with ``item_id`` (its stored neighbours), best first."""
    model = snapshot.model
    row = model.row_of.get(item_id)
    if row is None:
        raise NotFoundError("item", item_id)
    neighbours = model.ranking.neighbour_indices[row]
    scores = model.ranking.neighbour_scores[row]
    keep = neighbours >= 0
    keep[keep] = ~snapshot.catalog.blocked[neighbours[keep]]
    keep &= neighbours != row
    candidates, values = neighbours[keep], scores[keep]
    order, ordered = top_k(values, k)
    return Ranked(candidates[order].astype(np.int32), ordered, ["also_bought"] * order.size)


def popular(snapshot: Snapshot, k: int, category: str | None) -> Ranked:
    """Best sellers blended with trending items, optionally in one category."""
    model, catalog = snapshot.model, snapshot.catalog
    blocked = catalog.blocked
    if category is not None:
        blocked = blocked | catalog.outside_category(category)
    rows, values = top_k(model.popular_score, k, blocked)
    trending = model.popular_is_trending[rows]
    return Ranked(rows, values, np.where(trending, "trending", "popular").tolist())


def serialize_items(
    catalog: ItemCatalogue, item_ids: list[str], ranked: Ranked
) -> list[dict[str, Any]]:
    """The response items: ``item_id, score, reason, title, category, price``."""
    titles, categories, prices = catalog.titles, catalog.categories, catalog.prices
    return [
        {
            "item_id": item_ids[row],
            "score": round(score, 6),
            "reason": reason,
            "title": titles[row],
            "category": categories[row],
            "price": prices[row],
        }
        for row, score, reason in zip(
            ranked.rows.tolist(), ranked.scores.tolist(), ranked.reasons, strict=True
        )
    ]
