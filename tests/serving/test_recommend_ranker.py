"""The two-stage ranking as served: a bundle trained on the real sample with its learned
rankers, the page view (``recommend``), the offers batch and the offline evaluation ranking
every customer alike, the page's context still shaping the page."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servingkit import API_KEYS, READ, TestClient, retail_bundle_with_rankers

from recsys.bundle import ModelBundle, read_bundle, write_bundle
from recsys.config import Settings
from recsys.ranking.batch import rank_customer, rank_items_batch, rank_one
from recsys.ranking.candidates import candidates_for
from recsys.ranking.forest import NativeForest
from recsys.ranking.generator_ranker import GENERATORS
from recsys.ranking.scoring import REASON_CODES, RankingModel
from recsys.store import BatchRecord, CustomerState, LiveRecord
from serving.app import create_app
from serving.model_state import ItemCatalogue, ModelState, Snapshot
from serving.offers import scoring_inputs
from serving.ranker_onnx import OnnxRanker
from serving.recommend import RecommendationQuery, recommend
from training.evaluate import _rank_served
from training.ranker import blocked_for, customer_arguments, rank_served

AS_OF = "2011-09-01"


@pytest.fixture(scope="module")
def trained(retail_sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The sample's bundle with both tasks' rankers (served whether or not they won, so the
    ranker path is what these tests exercise), written and read back."""
    bundle = retail_bundle_with_rankers(retail_sample_path, AS_OF)
    root = tmp_path_factory.mktemp("ranker-artifacts")
    read = read_bundle(write_bundle(bundle, root))
    model = ModelState.from_bundle(read)
    return read, Snapshot(model, ItemCatalogue.build(model, {}, revision=-1))


@pytest.fixture(scope="module")
def onnx_snapshot(trained: tuple) -> Snapshot:
    """The same bundle with its rankers run by onnxruntime."""
    model = ModelState.from_bundle(trained[0], ranker_evaluator="onnx")
    return Snapshot(model, ItemCatalogue.build(model, {}, revision=-1))


def state_of(bundle: ModelBundle, u: int, live: LiveRecord | None = None) -> CustomerState:
    lo, hi = bundle.history.indptr[u], bundle.history.indptr[u + 1]
    record = BatchRecord(
        features={},
        user_vector=bundle.user_factors[u],
        history_items=bundle.history.indices[lo:hi].astype(np.int32),
        history_counts=bundle.history.data[lo:hi],
        history_last_days=bundle.history_last_days.data[lo:hi],
    )
    return CustomerState(str(bundle.customer_ids[u]), record, live or LiveRecord())


def known_customers(bundle: ModelBundle, n: int) -> list[int]:
    has = np.flatnonzero(np.diff(bundle.history.indptr) > 0)
    return has[:: max(1, len(has) // n)][:n].tolist()


def test_the_bundle_carries_signals_rankers_and_their_validation(trained: tuple) -> None:
    bundle, snapshot = trained
    assert set(bundle.ranker_onnx) == {"discovery", "all"}
    assert bundle.signals["ease_weights"].shape[0] == bundle.signals["ease_columns"].shape[0] > 0
    report = bundle.manifest.params["ranker"]
    for task in ("discovery", "all"):
        figures = report[task]["validation_ndcg@20"]
        assert set(figures) == {"ranker", "blend", "ease"}
        assert report[task]["served"] in ("ranker", "blend", *GENERATORS)
        assert set(report[task]["generators_ndcg@20"]) == set(GENERATORS)
        assert snapshot.model.ranking.ranker_for(task) is not None
        assert len(bundle.ranker_text[task]) > 1000  # the booster's model text, compiled
    assert snapshot.model.ranker_evaluators == {"all": "native", "discovery": "native"}


def test_the_ranker_ranks_differently_from_the_blend(trained: tuple) -> None:
    bundle, snapshot = trained
    ranking = snapshot.model.ranking
    blocked = snapshot.catalog.blocked
    differ = 0
    for u in known_customers(bundle, 40):
        customer = state_of(bundle, u).batch
        assert customer is not None
        args = (customer.user_vector, customer.history_items.astype(np.int64),
                customer.history_counts, customer.history_last_days)  # fmt: skip
        learned = rank_customer(ranking, args, 10, blocked, "all")
        blend = rank_one(ranking, args, 10, blocked)
        assert len(learned.rows) == 10 and not blocked[learned.rows].any()
        assert set(learned.reasons) <= set(REASON_CODES)
        differ += not np.array_equal(learned.rows, blend.rows)
    assert differ > 0


def test_the_offers_batch_ranks_every_customer_exactly_as_the_page_view(trained: tuple) -> None:
    bundle, snapshot = trained
    views = tuple(str(i) for i in bundle.items.item_ids[:3])
    customers = [
        state_of(bundle, u, LiveRecord(recent_views=views) if n % 3 == 0 else None)
        for n, u in enumerate(known_customers(bundle, 30))
    ]
    customers.append(CustomerState("nobody", None, LiveRecord()))
    query = RecommendationQuery(k=12, context="home", exclude_purchased=False)
    batch, extra = scoring_inputs(snapshot, customers, query)
    many = rank_items_batch(
        snapshot.model.ranking, batch, 12, snapshot.catalog.blocked, extra, task="all"
    )
    for customer, top in zip(customers, many, strict=True):
        _, single = recommend(snapshot, customer, query)
        np.testing.assert_array_equal(top.rows, single.rows)
        assert top.reasons == single.reasons
        np.testing.assert_array_equal(top.scores, single.scores)


def test_the_offline_evaluation_ranks_as_the_page_view(trained: tuple) -> None:
    bundle, snapshot = trained
    users = np.asarray(known_customers(bundle, 25))
    not_product = ~bundle.items.is_product.astype(bool)
    for exclude in (True, False):
        evaluated = _rank_served(bundle, snapshot.model.ranking, users, 20, exclude, not_product)
        query = RecommendationQuery(k=20, context="email", exclude_purchased=exclude)
        for row, u in zip(evaluated, users.tolist(), strict=True):
            _, served = recommend(snapshot, state_of(bundle, u), query)
            np.testing.assert_array_equal(row[: len(served.rows)], served.rows)
            if exclude:
                assert not np.isin(served.rows, state_of(bundle, u).batch.history_items).any()


def test_a_product_page_still_drives_similar_items(trained: tuple) -> None:
    bundle, snapshot = trained
    ranking = snapshot.model.ranking
    u = known_customers(bundle, 10)[3]
    item = int(np.flatnonzero((ranking.neighbour_indices >= 0).sum(axis=1) >= 10)[0])
    item_id = str(bundle.items.item_ids[item])
    home = RecommendationQuery(k=10, context="email")
    page = RecommendationQuery(k=10, context="product", item_id=item_id)
    _, plain = recommend(snapshot, state_of(bundle, u), home)
    _, shaped = recommend(snapshot, state_of(bundle, u), page)
    neighbours = set(ranking.neighbour_indices[item][:10].tolist())
    assert item not in shaped.rows.tolist()
    assert len(neighbours & set(shaped.rows.tolist())) > len(neighbours & set(plain.rows.tolist()))
    assert "similar_to_viewed" in shaped.reasons


def test_native_and_onnx_rankers_score_the_real_candidates_alike(
    trained: tuple, onnx_snapshot: Snapshot
) -> None:
    bundle, snapshot = trained
    assert onnx_snapshot.model.ranker_evaluators == {"all": "onnx", "discovery": "onnx"}
    ranking = snapshot.model.ranking
    assert ranking.signals is not None
    blocks = []
    for u in known_customers(bundle, 40):
        args = customer_arguments(bundle, u)
        blocks.append(candidates_for(ranking, ranking.signals, args, 20, None).features)
    features = np.concatenate(blocks)
    assert features.shape[0] > 1000
    for task in ("all", "discovery"):
        native = ranking.ranker_for(task)
        onnx = onnx_snapshot.model.ranking.ranker_for(task)
        assert isinstance(native, NativeForest) and isinstance(onnx, OnnxRanker)
        scores = native.predict(features)
        np.testing.assert_allclose(scores, onnx.predict(features), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(scores, onnx.predict(features))


def test_native_and_onnx_rankers_serve_the_same_pages_and_offers(
    trained: tuple, onnx_snapshot: Snapshot
) -> None:
    bundle, snapshot = trained
    views = tuple(str(i) for i in bundle.items.item_ids[:3])
    customers = [
        state_of(bundle, u, LiveRecord(recent_views=views) if n % 4 == 0 else None)
        for n, u in enumerate(known_customers(bundle, 40))
    ]
    for query in (
        RecommendationQuery(k=10, context="home"),
        RecommendationQuery(k=20, context="email", exclude_purchased=False),
    ):
        for customer in customers:
            _, native = recommend(snapshot, customer, query)
            _, onnx = recommend(onnx_snapshot, customer, query)
            assert native.rows.tolist() == onnx.rows.tolist()
            assert native.reasons == onnx.reasons
            assert native.scores.tobytes() == onnx.scores.tobytes()
        answers = []
        for served in (snapshot, onnx_snapshot):
            batch, extra = scoring_inputs(served, customers, query)
            ranking = served.model.ranking
            answers.append(
                rank_items_batch(ranking, batch, query.k, served.catalog.blocked, extra, "all")
            )
        for native, onnx in zip(*answers, strict=True):
            assert native.rows.tolist() == onnx.rows.tolist()
            assert native.scores.tobytes() == onnx.scores.tobytes()


def test_a_bundle_without_model_text_is_served_by_onnxruntime_with_one_warning(
    trained: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = trained[0]
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        model = ModelState.from_bundle(dataclasses.replace(bundle, ranker_text={}))
    assert model.ranker_evaluators == {"all": "onnx", "discovery": "onnx"}
    assert isinstance(model.ranking.ranker_for("all"), OnnxRanker)
    warnings = [r for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(warnings) == 1 and "no model text" in warnings[0].getMessage()


def test_a_forest_that_does_not_compile_falls_back_to_onnxruntime(
    trained: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = trained[0]
    broken = dict(bundle.ranker_text, discovery="tree\nmax_feature_idx=3\n")
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        model = ModelState.from_bundle(dataclasses.replace(bundle, ranker_text=broken))
    assert model.ranker_evaluators == {"all": "native", "discovery": "onnx"}
    warnings = [r for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(warnings) == 1 and "discovery" in warnings[0].getMessage()


def test_the_served_model_says_its_rankers_run_as_native_code(
    trained: tuple, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    write_bundle(trained[0], tmp_path)
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=tmp_path, api_keys=API_KEYS
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/model", headers=READ)
    assert response.status_code == 200
    assert response.json()["ranker_evaluator"] == {"all": "native", "discovery": "native"}


def _narrow_ranker(width: int, *, column: int, seed: int) -> Any:
    """A small lambdarank booster over ``width`` random columns (a ranker of an older
    FEATURES), relevant where ``column`` is above one half."""
    import lightgbm as lgb

    x = np.random.default_rng(seed).random((200, width)).astype(np.float32)
    data = lgb.Dataset(x, (x[:, column] > 0.5).astype(int), group=[20] * 10)
    params = {"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5}
    return lgb.train(params, data, num_boost_round=3)


@pytest.mark.parametrize("evaluator", ["native", "onnx"])
def test_a_ranker_of_another_width_is_skipped_not_served(
    trained: tuple, evaluator: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An old bundle's ranker (fewer feature columns than FEATURES) falls back to the blend,
    with a warning, instead of failing the load; the other task's ranker is still served."""
    import copy

    from recsys.ranking.candidates import FEATURES
    from serving.rankers import served_rankers
    from training.ranker_onnx import booster_to_onnx

    width = len(FEATURES) - 1
    narrow = _narrow_ranker(width, column=0, seed=0)
    old = copy.copy(trained[0])
    old.ranker_onnx = {**trained[0].ranker_onnx, "discovery": booster_to_onnx(narrow, width)}
    old.ranker_text = {**trained[0].ranker_text, "discovery": narrow.model_to_string()}
    if evaluator == "onnx":  # no model text: the ONNX input alone says the width
        old.ranker_text = {k: v for k, v in old.ranker_text.items() if k != "discovery"}
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        served = served_rankers(old, evaluator, tmp_path)  # type: ignore[arg-type]
    assert "discovery" not in served.rankers
    assert "all" in served.rankers
    warnings = [r for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1 and f"reads {width} features" in warnings[0].getMessage()
    assert served_rankers(trained[0], evaluator, tmp_path).rankers.keys() == {"discovery", "all"}  # type: ignore[arg-type]


def test_a_task_whose_guard_chose_popularity_is_served_in_popularity_order(
    trained: tuple, tmp_path: Path
) -> None:
    """The manifest's ``served: popularity`` replaces the task's learned ranker by the
    popularity column: the discovery page is the most popular items the customer lacks."""
    import copy

    from recsys.ranking.generator_ranker import GeneratorRanker
    from serving.rankers import served_rankers

    bundle = copy.copy(trained[0])
    bundle.manifest = copy.deepcopy(bundle.manifest)
    bundle.manifest.params["ranker"]["discovery"]["served"] = "popularity"
    bundle.ranker_onnx = {k: v for k, v in bundle.ranker_onnx.items() if k != "discovery"}
    bundle.ranker_text = {k: v for k, v in bundle.ranker_text.items() if k != "discovery"}
    served = served_rankers(bundle, "onnx", tmp_path)
    assert isinstance(served.rankers["discovery"], GeneratorRanker)
    assert not isinstance(served.rankers["all"], GeneratorRanker)
    assert served.evaluators == {"discovery": "generator", "all": "onnx"}  # what /v1/model says
    model = RankingModel.from_bundle(bundle, rankers=served.rankers)
    not_product = ~bundle.items.is_product.astype(bool)
    u = known_customers(bundle, 1)[0]
    ranked = rank_served(bundle, model, np.asarray([u]), 10, "discovery", not_product)[0]
    blocked = blocked_for(bundle, u, "discovery", not_product)
    expected = [int(r) for r in model.popular_order if not blocked[r]][:10]
    assert ranked.tolist() == expected


def test_an_older_bundle_without_recent_popularity_and_20_column_rankers_serves_the_blend(
    trained: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bundle written before ``popularity_recent``: its ``signals.npz`` has no ``recent`` and
    its rankers read the 20 columns before it. It loads (recent popularity all zero, no
    recent best sellers), both tasks fall back to the blend with ONE warning, and the page
    view, the offers batch and the candidates still work."""
    import copy

    from recsys.ranking.candidates import FEATURES
    from training.ranker_onnx import booster_to_onnx

    width = FEATURES.index("popularity_recent")
    assert width == 20 == len(FEATURES) - 1  # appended last: the older columns keep their index
    narrow = _narrow_ranker(width, column=7, seed=1)
    old = copy.copy(trained[0])
    old.signals = {k: v for k, v in trained[0].signals.items() if k != "recent"}
    old.ranker_onnx = {task: booster_to_onnx(narrow, width) for task in ("discovery", "all")}
    old.ranker_text = {task: narrow.model_to_string() for task in ("discovery", "all")}
    old.manifest = copy.deepcopy(old.manifest)
    for task in ("discovery", "all"):
        old.manifest.params["ranker"][task]["served"] = "ranker"
    read = read_bundle(write_bundle(old, tmp_path))
    assert "recent" not in read.signals
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        model = ModelState.from_bundle(read)
    warnings = [r for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1 and f"reads {width} features" in warnings[0].getMessage()
    ranking = model.ranking
    assert ranking.signals is not None and not ranking.signals.recent.any()
    assert ranking.signals.recent_order.size == 0
    assert ranking.ranker_for("discovery") is None and ranking.ranker_for("all") is None
    snapshot = Snapshot(model, ItemCatalogue.build(model, {}, revision=-1))
    query = RecommendationQuery(k=10, context="home", exclude_purchased=False)
    customers = [state_of(read, u) for u in known_customers(read, 10)]
    batch, extra = scoring_inputs(snapshot, customers, query)
    many = rank_items_batch(ranking, batch, 10, snapshot.catalog.blocked, extra, task="all")
    for customer, top in zip(customers, many, strict=True):
        _, single = recommend(snapshot, customer, query)
        assert customer.batch is not None
        args = (customer.batch.user_vector, customer.batch.history_items.astype(np.int64),
                customer.batch.history_counts, customer.batch.history_last_days)  # fmt: skip
        blend = rank_one(ranking, args, 10, snapshot.catalog.blocked)
        assert single.rows.tolist() == top.rows.tolist() == blend.rows.tolist()
        found = candidates_for(ranking, ranking.signals, args, 10, None)
        assert not found.features[:, width].any()
