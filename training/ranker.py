"""The learned ranker of the two-stage ranking: trained on time-shifted windows, selected on a
validation window, exported to ONNX.

Windows (``H`` = :data:`HORIZON_DAYS`): the validation cutoff is ``as_of - H`` and the training
cutoffs ``as_of - 2H``, ``as_of - 2H - S``, ... (``TrainingConfig.ranker_windows`` of them, ``S`` =
:data:`WINDOW_STEP_DAYS`: overlapping label windows, more customers to learn from; none of
them reaches the validation window; a cutoff with less than :data:`MIN_HISTORY_DAYS` of events
before it is skipped). At each cutoff ``t`` a bundle is built
from the events before ``t`` alone (:func:`training.build.build_bundle`: ALS, neighbours,
popularity, item signals), each sampled customer's candidates and features are computed by the
serving code (:func:`recsys.ranking.candidates.candidates_for`) and labelled by the purchases
of ``[t, t + H)``: training mimics serving, and nothing at or after ``as_of`` is read. Above
``TrainingConfig.ranker_training_customers`` customers the windows are built from the events of
a fixed random sample of that many (``training.sampling``; the report says so): a window only
labels :data:`CUSTOMERS_PER_WINDOW` of them, and its models need not see a million.

Per task (``discovery``: bought items blocked, new purchases relevant; ``all``): a LightGBM
lambdarank booster fitted on the training windows with early stopping on the validation one,
exported to ONNX (``onnxmltools``); then the validation window's NDCG@K of the exported ranker,
as served (:func:`recsys.ranking.batch.rank_customer`), against the blend and EASE. The ranker
is served for a task only where it beats the blend there and the best single generator
(``training.ranker_guard``: a generator that beats both is served instead, ``served`` names it);
the figures go to ``manifest.params["ranker"]``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.bundle import ModelBundle
from recsys.config import TrainingConfig
from recsys.ranking.batch import rank_items_batch
from recsys.ranking.candidates import FEATURES, candidates_for
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.exact_cf import exact_cf_rows
from recsys.ranking.scoring import RankingModel, top_k
from recsys.ranking.signals import TASKS
from recsys.ranking.topk_metrics import hit_matrix, ndcg_at_k
from training.baselines import order_weights
from training.build import BuildOptions, build_bundle
from training.interactions import rows_before
from training.ranker_guard import choose_served, generator_figures
from training.ranker_onnx import booster_to_onnx, onnx_rankers
from training.sampling import sample_customers

log = logging.getLogger(__name__)

HORIZON_DAYS: Final = 28
WINDOW_STEP_DAYS: Final = 14
MIN_HISTORY_DAYS: Final = 28
CUSTOMERS_PER_WINDOW: Final = 2000  # sampled per window and task (fixed seed)
K: Final = 20  # the cut the ranker is trained (lambdarank truncation) and selected at
LGBM_PARAMS: Final[dict[str, Any]] = {
    "objective": "lambdarank",
    "n_estimators": 200,
    "learning_rate": 0.08,
    "num_leaves": 15,
    "min_child_samples": 100,
    "colsample_bytree": 0.8,
    "lambdarank_truncation_level": K,
    "n_jobs": 1,
    "random_state": 0,
    "verbose": -1,
}
EARLY_STOPPING_ROUNDS: Final = 20
#: a training window with fewer labelled customers (any task) adds windows half a horizon earlier
MIN_LABELLED_CUSTOMERS: Final = 1000
#: the fewest trees a ranker keeps (early stopping on a small validation window stops too soon)
MIN_TREES: Final = 20


@dataclass(frozen=True)
class Window:
    """One cutoff's model, its customers' inputs and their labels."""

    model: RankingModel
    bundle: ModelBundle
    relevant: dict[str, sp.csr_matrix]  # task -> customers x items, binary
    users: dict[str, np.ndarray]  # task -> sampled customer rows


def customer_arguments(bundle: ModelBundle, u: int) -> tuple[Any, ...]:
    """What :func:`recsys.ranking.scoring.score_items` takes for customer row ``u`` of the
    bundle (its stored vector and history; no context)."""
    history, ages = bundle.history, bundle.history_last_days
    lo, hi = history.indptr[u], history.indptr[u + 1]
    vector = bundle.user_factors[u]
    return (
        vector if np.any(vector) else None,
        history.indices[lo:hi].astype(np.int64),
        history.data[lo:hi],
        ages.data[lo:hi],
    )


def blocked_for(bundle: ModelBundle, u: int, task: str, not_product: np.ndarray) -> np.ndarray:
    """Non-products, and for ``discovery`` the customer's bought items."""
    if task != "discovery":
        return not_product
    blocked = not_product.copy()
    blocked[bundle.history.indices[bundle.history.indptr[u] : bundle.history.indptr[u + 1]]] = 1
    return blocked


def rank_served(
    bundle: ModelBundle,
    model: RankingModel,
    users: np.ndarray,
    k: int,
    task: str,
    not_product: np.ndarray,
) -> np.ndarray:
    """``(len(users), k)`` item rows (-1 pads) of customer rows ``users`` as served
    (:func:`recsys.ranking.batch.rank_items_batch`: each one's :func:`rank_customer`, a block
    of customers at a time): non-products blocked, and for ``discovery`` the bought items."""
    arguments = [customer_arguments(bundle, u) for u in users.tolist()]
    batch = CustomerBatch.build(
        model.item_factors.shape[1], [a[0] for a in arguments], [a[1:4] for a in arguments]
    )
    own = [a[1] for a in arguments] if task == "discovery" else None
    out = np.full((len(users), k), -1, dtype=np.int32)
    for n, top in enumerate(rank_items_batch(model, batch, k, not_product, own, task)):
        out[n, : len(top.rows)] = top.rows
    return out


def _window(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    cutoff: pd.Timestamp,
    config: TrainingConfig,
    seed: int,
) -> Window:
    options = BuildOptions(with_features=False, with_churn=False)
    bundle = build_bundle(interactions, catalog, cutoff, config, options=options)
    model = RankingModel.from_bundle(bundle)
    end = cutoff + pd.Timedelta(days=HORIZON_DAYS)
    window = rows_before(interactions, end)
    bought = order_weights(window, bundle.customer_ids, bundle.items.item_ids, end, start=cutoff)
    bought.data[:] = 1.0
    bought = (bought @ sp.diags(bundle.items.is_product.astype(np.float64))).tocsr()
    bought.eliminate_zeros()
    seen = bundle.history.astype(bool).astype(np.float64)
    new = (bought - bought.multiply(seen)).tocsr()
    new.eliminate_zeros()
    known = np.diff(bundle.history.indptr) > 0
    rng = np.random.default_rng(seed)
    relevant = {"discovery": new, "all": bought}
    users = {}
    for task, rel in relevant.items():
        candidates = np.flatnonzero(known & (np.diff(rel.indptr) > 0))
        if len(candidates) > CUSTOMERS_PER_WINDOW:
            candidates = np.sort(rng.choice(candidates, CUSTOMERS_PER_WINDOW, replace=False))
        users[task] = candidates
    return Window(model, bundle, relevant, users)


@dataclass(frozen=True)
class Rows:
    """Learning-to-rank rows: features, labels, group sizes; ``recall``: the share of the
    labelled purchases that were among the candidates."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    recall: float


def _extra_cutoffs(
    cutoffs: list[pd.Timestamp], windows: list[Window], first: pd.Timestamp
) -> list[pd.Timestamp]:
    """Where a training window has fewer than :data:`MIN_LABELLED_CUSTOMERS` labelled customers
    in a task: as many cutoffs again, before the oldest, half a horizon apart (where the history
    allows it)."""
    small = any(len(users) < MIN_LABELLED_CUSTOMERS for w in windows for users in w.users.values())
    if not small:
        return []
    half = pd.Timedelta(days=HORIZON_DAYS / 2)
    oldest = min(cutoffs)
    extra = [oldest - j * half for j in range(1, len(cutoffs) + 1)]
    return [c for c in extra if c - first >= pd.Timedelta(days=MIN_HISTORY_DAYS)]


def _stack(parts: list[Rows]) -> Rows:
    found = sum(float(p.labels.sum()) for p in parts)
    wanted = sum(float(p.labels.sum()) / p.recall for p in parts if p.recall > 0)
    return Rows(
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.groups for p in parts]),
        found / wanted if wanted else 0.0,
    )


def _rows(window: Window, task: str) -> Rows:
    """The window's customers' candidates, labelled (groups with a hit only)."""
    signals = window.model.signals
    if signals is None:
        raise ValueError("the window's bundle has no item signals")
    not_product = ~window.bundle.items.is_product.astype(bool)
    rel = window.relevant[task]
    features, labels, groups = [], [], []
    wanted = 0
    users = window.users[task]
    # each customer's exact cf scores, a block of customers at a time (bit for bit)
    cf_rows = exact_cf_rows(window.model.item_factors, window.bundle.user_factors, users)
    for u, cf in zip(users.tolist(), cf_rows, strict=True):
        found = candidates_for(
            window.model,
            signals,
            customer_arguments(window.bundle, u) + (None, None, cf),
            K,
            blocked_for(window.bundle, u, task, not_product),
        )
        bought = rel.indices[rel.indptr[u] : rel.indptr[u + 1]]
        wanted += bought.size
        y = np.isin(found.rows, bought)
        if y.any():
            features.append(found.features)
            labels.append(y.astype(np.float32))
            groups.append(found.rows.size)
    if not groups:
        return Rows(np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, np.float32),
                    np.zeros(0, np.int64), 0.0)  # fmt: skip
    y_all = np.concatenate(labels)
    return Rows(np.concatenate(features), y_all, np.asarray(groups), float(y_all.sum()) / wanted)


def _fit(rows: Rows, valid: Rows | None, trees: int) -> Any:
    """A lambdarank booster (early stopping on ``valid`` when given)."""
    import lightgbm as lgb

    params = {key: v for key, v in LGBM_PARAMS.items() if key != "n_estimators"}
    params["objective"] = "lambdarank"
    params["eval_at"] = [K]
    data = lgb.Dataset(rows.features, rows.labels, group=rows.groups, free_raw_data=False)
    if valid is None:
        return lgb.train(params, data, num_boost_round=trees)
    held = lgb.Dataset(valid.features, valid.labels, group=valid.groups, reference=data)
    stop = lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)
    return lgb.train(params, data, num_boost_round=trees, valid_sets=[held], callbacks=[stop])


def _onnx(booster: Any, trees: int) -> bytes:
    """The booster's first ``trees`` trees as ONNX."""
    import lightgbm as lgb

    if booster.num_trees() > trees:
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=trees))
    return booster_to_onnx(booster, len(FEATURES))


def _validation_ndcg(window: Window, task: str, model: RankingModel, ease: bool) -> float:
    """NDCG@K over the window's customers of ``model`` as served (or of EASE alone)."""
    not_product = ~window.bundle.items.is_product.astype(bool)
    users = window.users[task]
    signals = window.model.signals
    if ease and signals is not None:
        ranked = np.full((len(users), K), -1, dtype=np.int32)
        for n, u in enumerate(users.tolist()):
            customer = customer_arguments(window.bundle, u)
            blocked = blocked_for(window.bundle, u, task, not_product)
            scores = signals.ease_scores(customer[1]) + 1e-6 * window.model.popularity
            rows = top_k(scores, K, blocked)[0]
            ranked[n, : len(rows)] = rows
    else:
        ranked = rank_served(window.bundle, model, users, K, task, not_product)
    rel = window.relevant[task][users]
    return float(ndcg_at_k(hit_matrix(ranked, rel), np.diff(rel.indptr), K).mean())


@dataclass(frozen=True)
class TrainedRankers:
    """The ONNX ranker of every task trained, the tasks where it beat the blend, the report;
    ``text``: each ranker's LightGBM model text (serving compiles it: ``recsys.ranking.forest``)."""

    onnx: dict[str, bytes]
    served: frozenset[str]
    report: dict[str, Any]
    text: dict[str, str] = field(default_factory=dict)

    @property
    def winners(self) -> dict[str, bytes]:
        return {task: onnx for task, onnx in self.onnx.items() if task in self.served}

    @property
    def winners_text(self) -> dict[str, str]:
        return {task: text for task, text in self.text.items() if task in self.served}


def train_rankers(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    as_of: Any,
    config: TrainingConfig | None = None,
) -> TrainedRankers:
    """Train and select the rankers on the events before ``as_of`` (see the module docstring)."""
    started = time.perf_counter()
    config = config or TrainingConfig()
    as_of = pd.Timestamp(as_of)
    if as_of.tzinfo is not None:
        as_of = as_of.tz_convert("UTC").tz_localize(None)
    events = rows_before(interactions, as_of)
    sample = sample_customers(events, config.ranker_training_customers, config.random_state)
    events = sample.interactions
    first = pd.Timestamp(events["timestamp"].min())
    horizon = pd.Timedelta(days=HORIZON_DAYS)
    step = pd.Timedelta(days=WINDOW_STEP_DAYS)
    n_windows = config.ranker_windows
    cutoffs = [as_of - horizon] + [as_of - 2 * horizon - j * step for j in range(n_windows)]
    cutoffs = [c for c in cutoffs if c - first >= pd.Timedelta(days=MIN_HISTORY_DAYS)]
    report: dict[str, Any] = {"horizon_days": HORIZON_DAYS, "features": list(FEATURES)}
    if sample.sampled:
        report["customer_sample"] = sample.to_dict()
    if len(cutoffs) < 2:
        report["skipped"] = (
            f"no training window with {MIN_HISTORY_DAYS} days of history before it"
            if n_windows
            else "ranker_windows is 0"
        )
        return TrainedRankers({}, frozenset(), report)
    report["cutoffs"] = [f"{c:%Y-%m-%d}" for c in cutoffs]
    cpu: dict[str, float] = {"windows": -time.process_time()}
    windows = [_window(events, catalog, c, config, seed=i) for i, c in enumerate(cutoffs)]
    cpu["windows"] += time.process_time()
    valid, train = windows[0], windows[1:]
    extra = _extra_cutoffs(cutoffs[1:], train, first)
    if extra:  # small windows: more groups from cutoffs between them
        cpu["windows"] -= time.process_time()
        start = len(windows)
        train += [_window(events, catalog, c, config, seed=start + i) for i, c in enumerate(extra)]
        cpu["windows"] += time.process_time()
        report["extra_cutoffs"] = [f"{c:%Y-%m-%d}" for c in extra]
    trained: dict[str, bytes] = {}
    texts: dict[str, str] = {}
    served: set[str] = set()
    for task in TASKS:
        cpu[f"{task}/features"] = -time.process_time()
        fit_rows = _stack([_rows(w, task) for w in train])
        valid_rows = _rows(valid, task)
        cpu[f"{task}/features"] += time.process_time()
        if not len(fit_rows.groups) or not len(valid_rows.groups):
            report[task] = {"skipped": "no labelled customers"}
            continue
        cpu[f"{task}/fit"] = -time.process_time()
        model = _fit(fit_rows, valid_rows, LGBM_PARAMS["n_estimators"])
        trees = int(model.best_iteration) if model.best_iteration > 0 else model.num_trees()
        trees = max(trees, min(MIN_TREES, model.num_trees()))
        cpu[f"{task}/fit"] += time.process_time()
        cpu[f"{task}/validation"] = -time.process_time()
        learned = replace(valid.model, rankers=onnx_rankers({task: _onnx(model, trees)}))
        figures = {
            "ranker": _validation_ndcg(valid, task, learned, ease=False),
            "blend": _validation_ndcg(valid, task, valid.model, ease=False),
            "ease": _validation_ndcg(valid, task, valid.model, ease=True),
        }
        ndcg = partial(_validation_ndcg, valid, task, ease=False)
        generators = generator_figures(valid.model, task, ndcg)
        cpu[f"{task}/validation"] += time.process_time()
        cpu[f"{task}/refit"] = -time.process_time()
        final = _fit(_stack([fit_rows, valid_rows]), None, trees)  # the newest window too
        trained[task] = _onnx(final, trees)
        texts[task] = final.model_to_string(num_iteration=trees)
        cpu[f"{task}/refit"] += time.process_time()
        choice = choose_served(figures, generators)
        if choice == "ranker":
            served.add(task)
        report[task] = {
            f"validation_ndcg@{K}": {m: round(v, 5) for m, v in figures.items()},
            f"generators_ndcg@{K}": {m: round(v, 5) for m, v in generators.items()},
            "served": choice,
            "trees": trees,
            "train_rows": int(len(fit_rows.labels)),
            "train_groups": int(len(fit_rows.groups)),
            "candidate_recall": round(fit_rows.recall, 4),
            "importance": dict(
                zip(FEATURES, final.feature_importance("gain").round(1).tolist(), strict=True)
            ),
        }
        log.info("ranker %s: %s", task, report[task][f"validation_ndcg@{K}"])
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["cpu_seconds"] = {name: round(v, 3) for name, v in cpu.items()}
    return TrainedRankers(trained, frozenset(served), report, texts)


def with_rankers(
    bundle: ModelBundle,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    as_of: Any,
    config: TrainingConfig | None = None,
) -> ModelBundle:
    """``bundle`` with the rankers that won (``ranker_onnx``, ``ranker_text``) and the report in
    its manifest."""
    if not bundle.signals:
        return bundle
    trained = train_rankers(
        interactions, catalog, bundle.manifest.data.as_of if as_of is None else as_of, config
    )
    bundle.ranker_onnx = trained.winners
    bundle.ranker_text = trained.winners_text
    bundle.manifest.params["ranker"] = trained.report
    return bundle
