"""Every customer's items of an email offer, ranked once at training (``email_items.npz``).

An offer's items by email (``serving.offers.items_query``: the "all" task, no page context,
bought items allowed, ``item_slots`` of them) depend on nothing but the model version, the
customer's batch record and the catalogue's blocked set as long as no event has changed the
customer (no live purchases, folded-in vector or dislikes). So they are ranked here, for every
customer of the bundle, by the very function the offers batch ranks with
(:func:`recsys.ranking.batch.rank_items_batch`, a block of customers at a time), from the
records a bulk load stores (the vector as float16 when ``compact``, the whole history) and the
bundle's own catalogue (non-products and items out of stock blocked); serving takes a customer's
row instead of ranking them while those assumptions hold (``serving.email_items``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from recsys.bundle import ModelBundle
from recsys.decisions.offer_set import OfferSet, load_offer_set, parse_offer_set
from recsys.ranking.batch import rank_items_batch
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.generator_ranker import generator_rankers
from recsys.ranking.scoring import RankingModel
from training.ranker_onnx import onnx_rankers

#: Customers ranked together (each block's arrays are a few MB of the item count).
BLOCK: Final = 2048
#: The task and the answer's length the offers' items use (``serving.offers.items_query``).
TASK: Final = "all"


def item_slots(offer_set: OfferSet) -> int:
    """How many items the offers of ``offer_set`` carry at most (as serving counts them)."""
    return max([o.max_items for o in offer_set.offers if o.needs_items], default=0)


def _offer_set(bundle: ModelBundle) -> OfferSet:
    raw = bundle.extra.get("offers")
    return parse_offer_set(raw) if raw is not None else load_offer_set()


def email_items(bundle: ModelBundle, compact: bool = True) -> dict[str, np.ndarray]:
    """The arrays of ``email_items.npz`` for ``bundle`` (with its rankers; empty when no
    offer needs items): ``rows`` (i4, customers x k, -1 pads), ``blocked`` (the blocked set
    assumed), ``compact`` (float16 vectors assumed)."""
    k = item_slots(_offer_set(bundle))
    if k <= 0 or not len(bundle.customer_ids):
        return {}
    guarded = generator_rankers(bundle.manifest.params.get("ranker", {}))
    rankers = {**guarded, **onnx_rankers(bundle.ranker_onnx)}
    model = RankingModel.from_bundle(bundle, rankers=rankers)
    items = bundle.items
    blocked = ~np.asarray(items.is_product, dtype=bool) | ~np.asarray(items.in_stock, dtype=bool)
    factors = np.ascontiguousarray(bundle.user_factors, dtype="<f4")
    if compact:
        factors = factors.astype("<f2").astype(np.float32)
    history, last_days = bundle.history.tocsr(), bundle.history_last_days.tocsr()
    indptr = history.indptr.astype(np.int64)
    h_items = history.indices.astype("<i4", copy=False)
    h_counts = history.data.astype("<f4", copy=False)
    h_days = last_days.data.astype("<f4", copy=False)
    n, width = len(bundle.customer_ids), factors.shape[1]
    out = np.full((n, k), -1, dtype=np.int32)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        edges = indptr[start : stop + 1].tolist()
        bounds = zip(edges[:-1], edges[1:], strict=True)
        histories = [(h_items[lo:hi], h_counts[lo:hi], h_days[lo:hi]) for lo, hi in bounds]
        batch = CustomerBatch.build(width, list(factors[start:stop]), histories)
        no_rows = [np.zeros(0, dtype=np.int64)] * (stop - start)
        ranked = rank_items_batch(model, batch, k, blocked, no_rows, TASK)
        for i, top in enumerate(ranked):
            out[start + i, : len(top.rows)] = top.rows
    return {"rows": out, "blocked": blocked, "compact": np.array(compact)}
