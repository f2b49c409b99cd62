"""A large catalogue's page view scores retrieved candidates; a small one scores every item."""

from __future__ import annotations

from servingkit import make_bundle

from recsys.store import BatchRecord, CustomerState, LiveRecord
from serving.model_state import ItemCatalogue, ModelState, Snapshot
from serving.recommend import RecommendationQuery, recommend


def snapshot(retrieval_min_items: int) -> Snapshot:
    model = ModelState.from_bundle(make_bundle(), retrieval_min_items=retrieval_min_items)
    return Snapshot(model, ItemCatalogue.build(model, {}, revision=-1))


def test_below_the_configured_size_there_is_no_index_and_above_it_one() -> None:
    small = snapshot(retrieval_min_items=10**6)
    assert small.model.retrieval is None
    large = snapshot(retrieval_min_items=1)
    assert large.model.retrieval is not None
    assert sorted(large.model.retrieval.rows.tolist()) == list(range(large.model.n_items))


def test_with_every_cluster_probed_retrieval_ranks_exactly_as_exact_scoring() -> None:
    exact, approx = snapshot(10**6), snapshot(1)
    index = approx.model.retrieval
    assert index is not None
    object.__setattr__(index, "probes", len(index.centroids))  # probe everything
    bundle = make_bundle()
    query = RecommendationQuery(k=5)
    for row in range(len(bundle.customer_ids)):
        state = CustomerState(
            customer_id=str(bundle.customer_ids[row]),
            batch=BatchRecord(features={}, user_vector=bundle.user_factors[row]),
            live=LiveRecord(),
        )
        a, b = recommend(exact, state, query), recommend(approx, state, query)
        assert a[0] == b[0] == "personalized"
        assert a[1].rows.tolist() == b[1].rows.tolist()
