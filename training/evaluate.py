"""Time-split offline evaluation: train before a date, score the purchases after it.

Who and what is scored: customers known to the model (seen before the split) who buy at least
one product after it; the relevant items are the distinct products they buy after the split
that the model knows (products first sold after the split cannot be ranked by any method and
are counted in ``counts["unknown_item_purchases"]``). Two tasks:

* ``all``: every such item, re-orders included; rankings may return bought items;
* ``discovery``: only items the customer never bought before the split; every method's ranking
  excludes the customer's bought items (the served ranking with ``exclude_purchased=true``).

Methods: ``served`` (``recsys.ranking.batch.rank_customer`` through ``rank_items_batch``,
exactly what the API serves: the learned ranker of ``training.ranker`` where it won its
validation window, else the blend),
``als`` (user x item factor scores alone), ``item_knn`` (sum of the stored neighbour
similarities of bought items),
``popularity`` (the best-seller prior) and ``buy_again`` (the customer's own items by number
of orders, most recent first on ties; ``all`` only), and the strong baselines of
``training.baselines``, tuned on a validation split carved from the training window: ``ease``
(closed-form EASE, L2 tuned per task) and ``buy_again_popular`` (recency-weighted repeat counts,
then best sellers; ``all`` only). Non-product codes are never ranked. Metrics are in
``recsys.ranking.topk_metrics``.

Intervals (``training.bootstrap``): 95% bootstrap intervals over the task's customers for
NDCG and recall at every k, and the paired difference served minus each other method with its
interval; ``report["verdicts"]`` says "served beats X" (at the largest k, ``summary_k``) only
when that interval excludes 0. Popularity bias per method and k: ``training.exposure``.
Churn (``report["churn"]``, ``training.customer_eval``): the served churn model against
logistic regression on RFM, with intervals for ROC-AUC and Brier and their paired differences.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.bundle import ModelBundle
from recsys.config import TrainingConfig
from recsys.errors import InvalidRequestError
from recsys.io.progress import Steps
from recsys.ranking.generator_ranker import generator_rankers
from recsys.ranking.scoring import RankingModel, RankingParams
from recsys.ranking.topk_metrics import hit_matrix, ndcg_at_k, recall_at_k, summarize
from training.baselines import TunedBaselines, top_k_rows, tune_baselines
from training.bootstrap import ranking_intervals, verdicts
from training.build import BuildOptions, build_bundle
from training.exposure import popularity_bias
from training.interactions import index_of
from training.ranker import rank_served, with_rankers
from training.ranker_onnx import onnx_rankers

METHODS: tuple[str, ...] = (
    "served",
    "ease",
    "buy_again_popular",
    "als",
    "item_knn",
    "popularity",
    "buy_again",
)
BASELINES: tuple[str, ...] = ("ease", "buy_again_popular")
ALL_ONLY: tuple[str, ...] = ("buy_again", "buy_again_popular")  # nothing of one's own is new
TASKS: tuple[str, ...] = ("discovery", "all")
HEADLINE = ("ndcg", "recall")
K_VALUES: tuple[int, ...] = (5, 10, 20, 50)  # the summary and the verdicts are at the largest
_BATCH = 1024
_BATCH_CELLS = 4_000_000  # customers x items scored densely at once: bounded memory at any size
_TIE_BREAK = 1e-6  # popularity breaks ties of baselines whose scores are often equal (0)


@dataclass(frozen=True)
class EvalSet:
    """The users of each task (customer rows of the bundle) and their relevant items."""

    users: dict[str, np.ndarray]  # task -> i8 customer rows
    relevant: dict[str, sp.csr_matrix]  # task -> (len(users[task]), n_items) binary
    counts: dict[str, float]


def ground_truth(
    bundle: ModelBundle, test: pd.DataFrame, max_customers: int | None = None, seed: int = 0
) -> EvalSet:
    """Relevant items per task from the purchase rows of ``test`` (see the module docstring).

    ``max_customers``: score a uniform random sample (fixed by ``seed``) of at most this many
    customers of the ``all`` task (``counts["customers_sampled_from"]`` says of how many).
    """
    n_items = len(bundle.items)
    buys = test.loc[
        (test["event_type"] == "purchase")
        & test["customer_id"].notna()
        & test["item_id"].notna()
        & test["is_product"].astype(bool)
    ]
    cust = index_of(bundle.customer_ids, buys["customer_id"])
    item = index_of(bundle.items.item_ids, buys["item_id"])
    known_item = item >= 0
    known_item[known_item] &= bundle.items.is_product[item[known_item]]
    keep = (cust >= 0) & known_item
    pairs = np.unique(np.stack([cust[keep], item[keep]], axis=1), axis=0).reshape(-1, 2)
    users_all = np.unique(pairs[:, 0])
    sampled_from = len(users_all)
    if max_customers is not None and len(users_all) > max_customers:
        rng = np.random.default_rng(seed)
        users_all = np.sort(rng.choice(users_all, max_customers, replace=False))
        pairs = pairs[np.isin(pairs[:, 0], users_all)]
    rows = np.searchsorted(users_all, pairs[:, 0])
    shape = (len(users_all), n_items)
    rel_all = sp.csr_matrix((np.ones(len(pairs), np.float32), (rows, pairs[:, 1])), shape=shape)

    history = bundle.history.tocsr()
    seen = history[users_all].astype(bool).astype(np.float32)
    rel_new = (rel_all - rel_all.multiply(seen)).tocsr()
    rel_new.eliminate_zeros()
    has_new = np.diff(rel_new.indptr) > 0
    counts: dict[str, float] = {
        "test_purchase_rows": int(len(buys)),
        "test_customers": int(buys["customer_id"].nunique()),
        "new_customers_not_evaluated": int(buys.loc[cust < 0, "customer_id"].nunique()),
        "unknown_item_purchases": int(np.count_nonzero((cust >= 0) & ~known_item)),
        "customers_all": int(len(users_all)),
        "customers_sampled_from": int(sampled_from),
        "customers_discovery": int(has_new.sum()),
        "relevant_pairs_all": int(rel_all.nnz),
        "relevant_pairs_discovery": int(rel_new.nnz),
        "repeat_share_all": float(1.0 - rel_new.nnz / rel_all.nnz) if rel_all.nnz else 0.0,
    }
    return EvalSet(
        users={"all": users_all, "discovery": users_all[has_new]},
        relevant={"all": rel_all, "discovery": rel_new[has_new]},
        counts=counts,
    )


def _neighbour_matrix(bundle: ModelBundle) -> sp.csr_matrix:
    idx, sims = bundle.neighbour_indices, bundle.neighbour_scores
    n = idx.shape[0]
    rows = np.repeat(np.arange(n), idx.shape[1])
    valid = idx.ravel() >= 0
    return sp.csr_matrix(
        (sims.ravel()[valid], (rows[valid], idx.ravel()[valid])), shape=(n, n), dtype=np.float32
    )


def rank_users(
    method: str,
    bundle: ModelBundle,
    model: RankingModel,
    users: np.ndarray,
    k: int,
    exclude_history: bool,
    baselines: TunedBaselines | None = None,
) -> np.ndarray:
    """``(len(users), k)`` item rows ranked by ``method`` (-1 pads)."""
    history = bundle.history.tocsr()
    ages = bundle.history_last_days.tocsr()
    not_product = ~bundle.items.is_product.astype(bool)
    if method == "served":
        return _rank_served(bundle, model, users, k, exclude_history, not_product)
    out = np.full((len(users), k), -1, dtype=np.int32)
    knn = _neighbour_matrix(bundle) if method == "item_knn" else None
    step = max(1, min(_BATCH, _BATCH_CELLS // max(1, history.shape[1])))
    for start in range(0, len(users), step):
        batch = users[start : start + step]
        hist = history[batch]
        if method in BASELINES:
            if baselines is None:
                raise ValueError(f"{method!r} needs the tuned baselines")
            task = "discovery" if exclude_history else "all"
            scores = baselines.scores(method, batch, task, len(bundle.items))
        elif method == "als":
            scores = bundle.user_factors[batch] @ bundle.item_factors.T
        elif method == "popularity":
            scores = np.tile(model.popularity, (len(batch), 1))
        elif method == "item_knn":
            scores = (hist.astype(bool).astype(np.float32) @ knn).toarray()
            scores += _TIE_BREAK * model.popularity
        elif method == "buy_again":
            scores = np.full(hist.shape, -np.inf, dtype=np.float64)
            age = ages[batch]
            r, c = hist.nonzero()
            # more orders first; among equals the most recent (ages < 1e5 days)
            scores[r, c] = np.asarray(hist[r, c]).ravel() - 1e-6 * np.asarray(age[r, c]).ravel()
        else:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        scores = np.asarray(scores, dtype=np.float64)
        scores[:, not_product] = -np.inf
        if exclude_history:
            r, c = hist.nonzero()
            scores[r, c] = -np.inf
        out[start : start + len(batch)] = top_k_rows(scores, k)
    return out


def _rank_served(
    bundle: ModelBundle,
    model: RankingModel,
    users: np.ndarray,
    k: int,
    exclude_history: bool,
    not_product: np.ndarray,
) -> np.ndarray:
    """As serving ranks each customer (:func:`rank_customer`: the learned ranker of the task
    where the bundle has one, else the blend), a block of customers at a time."""
    task = "discovery" if exclude_history else "all"
    return rank_served(bundle, model, users, k, task, not_product)


def evaluate_bundle(
    bundle: ModelBundle,
    test: pd.DataFrame,
    k_values: tuple[int, ...] = K_VALUES,
    ranking: RankingParams | None = None,
    methods: tuple[str, ...] = METHODS,
    eval_set: EvalSet | None = None,
    baselines: TunedBaselines | None = None,
) -> dict[str, Any]:
    """Metrics per task per method (``{"tasks": {task: {method: {...}}}, "intervals", ...}``).

    Methods of ``BASELINES`` are skipped when ``baselines`` is None.
    """
    eval_set = eval_set or ground_truth(bundle, test)
    guarded = generator_rankers(bundle.manifest.params.get("ranker", {}))
    rankers = {**guarded, **onnx_rankers(bundle.ranker_onnx)}
    model = RankingModel.from_bundle(bundle, rankers=rankers)
    if ranking is not None:
        model = replace(model, params=ranking)
    n_candidates = int(bundle.items.is_product.sum())
    k_max = max(k_values)
    buyers = np.asarray((bundle.history.tocsc() > 0).sum(axis=0)).ravel()  # training buyers
    products = bundle.items.is_product.astype(bool)
    tasks: dict[str, dict[str, Any]] = {}
    intervals: dict[str, Any] = {}
    timing: dict[str, float] = {}
    for task in TASKS:
        users = eval_set.users[task]
        if len(users) == 0:
            continue
        tasks[task] = {}
        per_user: dict[str, dict[str, np.ndarray]] = {}
        relevant = eval_set.relevant[task]
        n_relevant = np.diff(relevant.indptr)
        for method in methods:
            if (method in ALL_ONLY and task == "discovery") or (
                method in BASELINES and baselines is None
            ):
                continue
            t = time.perf_counter()
            ranked = rank_users(method, bundle, model, users, k_max, task == "discovery", baselines)
            timing[f"{task}/{method}"] = time.perf_counter() - t
            tasks[task][method] = summarize(ranked, relevant, k_values, n_candidates)
            tasks[task][method].update(popularity_bias(ranked, buyers, products, k_values))
            hits = hit_matrix(ranked, relevant)
            per_user[method] = {
                f"{name}@{k}": metric(hits, n_relevant, k)
                for k in k_values
                for name, metric in (("ndcg", ndcg_at_k), ("recall", recall_at_k))
            }
        intervals[task] = ranking_intervals(per_user)
    return {
        "tasks": tasks,
        "intervals": intervals,
        "counts": {**eval_set.counts, "items": len(bundle.items), "products": n_candidates},
        "timing": {"scoring_seconds": {key: round(v, 4) for key, v in timing.items()}},
        "ranking": model.params.to_dict(),
    }


def summary(tasks: dict[str, dict[str, Any]], k: int) -> dict[str, Any]:
    """Headline figures at ``k`` and the served ranking's relative lift over each baseline."""
    out: dict[str, Any] = {}
    for task, by_method in tasks.items():
        served = by_method.get("served")
        rows: dict[str, Any] = {}
        for method, m in by_method.items():
            row = {name: round(m[f"{name}@{k}"], 4) for name in HEADLINE}
            if served is not None and method != "served":
                for name in HEADLINE:
                    base = m[f"{name}@{k}"]
                    lift = (served[f"{name}@{k}"] / base - 1.0) if base > 0 else float("inf")
                    row[f"served_lift_{name}"] = round(lift, 4)
            rows[method] = row
        out[task] = rows
    return out


def evaluate_split(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    split: Any,
    config: TrainingConfig | None = None,
    *,
    ranking: RankingParams | None = None,
    k_values: tuple[int, ...] = K_VALUES,
    methods: tuple[str, ...] = METHODS,
    end: Any = None,
    catalog_is_derived: bool = True,
    with_churn: bool = True,
    max_customers: int | None = None,
    with_ranker: bool = True,
) -> dict[str, Any]:
    """Train on events before ``split`` and score purchases in ``[split, end)``.

    ``with_churn``: also train the churn model before ``split`` and score it (and logistic
    regression on RFM) on the customers known at ``split`` (``report["churn"]``).
    ``with_ranker``: train the learned rankers (``training.ranker``) as ``recsys train`` does;
    False evaluates the blend alone. ``max_customers``: score a fixed random sample of at
    most this many customers (see :func:`ground_truth`); None scores them all.

    ``catalog_is_derived``: the catalogue was derived from the whole events file (no catalogue
    file), so it lists items first sold after the split; they are dropped to keep the future
    out of the model (their later purchases count as ``unknown_item_purchases``).
    """
    split = pd.Timestamp(split)
    steps = Steps(
        "evaluate", ["train", "baselines", "score", *(["churn", "customers"] * with_churn)]
    )
    steps.step("train")
    if catalog is not None and catalog_is_derived:
        before = interactions.loc[interactions["timestamp"].lt(split), "item_id"].dropna()
        catalog = catalog.loc[catalog["item_id"].isin(before.unique())]
    t = time.perf_counter()
    options = BuildOptions(with_features=False, with_churn=False)
    bundle = build_bundle(interactions, catalog, split, config, ranking=ranking, options=options)
    if with_ranker:
        bundle = with_rankers(bundle, interactions, catalog, split, config)
    train_seconds = time.perf_counter() - t
    test = interactions.loc[interactions["timestamp"].ge(split)]
    if end is not None:
        test = test.loc[test["timestamp"].lt(pd.Timestamp(end))]
    seed = (config or TrainingConfig()).random_state
    eval_set = ground_truth(bundle, test, max_customers, seed)
    if eval_set.counts["customers_all"] == 0:
        raise InvalidRequestError(
            f"no purchases after {split:%Y-%m-%d} by customers seen before it: nothing to score"
        )
    steps.step("baselines")
    t = time.perf_counter()
    baselines = None
    if any(m in BASELINES for m in methods):
        baselines = tune_baselines(
            interactions,
            bundle.customer_ids,
            bundle.items.item_ids,
            bundle.items.is_product,
            RankingModel.from_bundle(bundle).popularity,
            split,
            k=max(k_values),
        )
    tune_seconds = time.perf_counter() - t
    steps.step("score")
    result = evaluate_bundle(bundle, test, k_values, ranking, methods, eval_set, baselines)
    result["split_date"] = f"{split:%Y-%m-%d %H:%M:%S}"
    result["timing"]["train_seconds"] = round(train_seconds, 3)
    result["timing"]["baseline_tuning_seconds"] = round(tune_seconds, 3)
    result["baseline_tuning"] = baselines.tuning if baselines is not None else {}
    result["ranker"] = bundle.manifest.params.get("ranker", {})
    result["summary_k"] = max(k_values)
    result["summary"] = summary(result["tasks"], max(k_values))
    result["verdicts"] = verdicts(result["intervals"], k=max(k_values))
    if with_churn:
        from training.customer_eval import churn_report, churn_verdicts, customer_report

        steps.step("churn")
        result["churn"] = churn_report(interactions, catalog, split, config, end)
        result["verdicts"] += churn_verdicts(result["churn"])
        steps.step("customers")
        result["customers"] = customer_report(interactions, catalog, split, config, end)
    steps.close()
    return result


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate(
    events_path: Path | str,
    split_date: Any,
    out_dir: Path | str | None = None,
    fmt: str = "auto",
    config: TrainingConfig | None = None,
    k_values: tuple[int, ...] = K_VALUES,
    *,
    catalog_path: Path | str | None = None,
    ranking: RankingParams | None = None,
) -> dict[str, Any]:
    """Load, train before ``split_date``, score after it; write report.json, report.html and
    the plots (``training.report_files``)."""
    from recsys.io.loaders import load_interactions

    started = time.perf_counter()
    config = config or TrainingConfig()
    loaded = load_interactions(Path(events_path), fmt=fmt, catalog_path=catalog_path)
    load_seconds = time.perf_counter() - started
    report = evaluate_split(
        loaded.interactions,
        loaded.catalog,
        split_date,
        config,
        ranking=ranking,
        k_values=k_values,
        catalog_is_derived=catalog_path is None,
    )
    report = {
        "events": str(events_path),
        "format": loaded.format,
        "k_values": list(k_values),
        "config": config.model_dump(),
        **report,
    }
    report["timing"]["load_seconds"] = round(load_seconds, 3)
    report["timing"]["total_seconds"] = round(time.perf_counter() - started, 3)
    report["peak_memory_mb"] = round(peak_memory_mb(), 1)
    if out_dir is not None:
        from training.report_files import write_report

        write_report(report, Path(out_dir))
    return report
