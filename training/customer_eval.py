"""Honest figures for the customer models on a time split.

Churn: the model is trained on data before ``as_of`` (``training.churn.train_churn``); the test
rows are the customers who bought before ``as_of``, with features as of ``as_of`` and the label
"no purchase in ``[as_of, as_of + horizon)``" taken from the events after ``as_of``. The model
is compared with "recency alone" and a logistic regression on RFM, both fitted on the same
training windows: ROC-AUC, PR-AUC, Brier score, top-decile lift.

CLV: BG/NBD x Gamma-Gamma fitted on the features as of ``as_of``; since the data after
``as_of`` may be shorter than the 12-month CLV horizon, the backtest compares the **predicted
spend over the days actually observed after as_of** with the actual net spend (products,
purchases minus returns) in that period, per customer who bought before ``as_of``: Pearson and
Spearman correlations and the mean absolute error; "last 90 days' spend, scaled to the period"
is shown beside it as a naive reference.

    python -m training.customer_eval --events PATH --as-of 2011-06-01 [--horizon-days 90]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_curve

from recsys.config import TrainingConfig
from training.bootstrap import binary_intervals, reliability
from training.churn import baseline_scores, binary_metrics, build_window, train_churn
from training.clv_backtest import LEARNED, NAIVE, SERVED, clv_backtest

DAY = pd.Timedelta(days=1)


def churn_figures(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: int,
    catalog: pd.DataFrame | None = None,
) -> dict[str, Any]:
    past = interactions.loc[interactions["timestamp"].lt(as_of)]
    artifacts = train_churn(past, as_of, horizon_days, catalog)
    test = build_window(interactions, as_of, horizon_days, catalog)
    scores = {"model": artifacts.predict(test.features)}
    scores.update(baseline_scores(artifacts.baselines, test.features))
    end = interactions["timestamp"].max()
    return {
        "label_window": [f"{as_of:%Y-%m-%d}", f"{as_of + horizon_days * DAY:%Y-%m-%d}"],
        "label_window_complete": bool(end >= as_of + (horizon_days - 1) * DAY),
        "test": {name: binary_metrics(test.labels, s) for name, s in scores.items()},
        "intervals": binary_intervals(test.labels, scores, reference="model"),
        "reliability": {name: reliability(test.labels, s) for name, s in scores.items()},
        "roc_curve": {name: roc_points(test.labels, s) for name, s in scores.items()},
        "held_out_window": artifacts.metrics,
        "backtest": [
            backtest_row(as_of, test.labels, scores),
            *churn_backtest(interactions, as_of, horizon_days, catalog, start=1),
        ],
    }


def churn_backtest(
    interactions: pd.DataFrame,
    split: pd.Timestamp,
    horizon_days: int,
    catalog: pd.DataFrame | None = None,
    months: int = 3,
    start: int = 0,
) -> list[dict[str, Any]]:
    """The served recipe at ``split`` and at the ``months - 1`` monthly cutoffs before it: each
    trained on the data before its cutoff and scored on that cutoff's customers, so that the
    base rate, the mean predicted risk and the reliability can be read cutoff by cutoff
    (``start``: the first month back). A cutoff without enough history says so
    (``skipped``)."""
    rows: list[dict[str, Any]] = []
    for k in range(start, months):
        cutoff = pd.Timestamp(split) - pd.DateOffset(months=k)
        row: dict[str, Any] = {"cutoff": f"{cutoff:%Y-%m-%d}"}
        try:
            artifacts = train_churn(
                interactions.loc[interactions["timestamp"].lt(cutoff)],
                cutoff,
                horizon_days,
                catalog,
            )
        except ValueError as exc:
            rows.append({**row, "skipped": str(exc)})
            continue
        test = build_window(interactions, cutoff, horizon_days, catalog)
        if np.unique(test.labels).size < 2:
            rows.append({**row, "skipped": "a single class in the test window"})
            continue
        scores = {"model": artifacts.predict(test.features)}
        scores.update(baseline_scores(artifacts.baselines, test.features))
        rows.append(backtest_row(cutoff, test.labels, scores))
    return rows


def backtest_row(
    cutoff: pd.Timestamp, labels: np.ndarray, scores: dict[str, np.ndarray]
) -> dict[str, Any]:
    """One cutoff of :func:`churn_backtest`: the model and logistic regression on RFM."""
    scores = {name: s for name, s in scores.items() if name in ("model", "rfm_logistic")}
    return {
        "cutoff": f"{cutoff:%Y-%m-%d}",
        "churn_rate": float(np.mean(labels)),
        "mean_predicted": {name: float(np.mean(s)) for name, s in scores.items()},
        "test": {name: binary_metrics(labels, s) for name, s in scores.items()},
        "reliability": reliability(labels, scores["model"]),
    }


def roc_points(labels: np.ndarray, scores: np.ndarray, most: int = 200) -> dict[str, list]:
    """The ROC curve (``fpr``, ``tpr``), thinned to at most ``most`` points for the report."""
    fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, np.float64))
    if len(fpr) > most:
        keep = np.unique(np.linspace(0, len(fpr) - 1, most).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def churn_report(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    split: pd.Timestamp,
    config: TrainingConfig | None,
    end: Any = None,
) -> dict[str, Any]:
    """The served churn model vs logistic regression on RFM at ``split`` (or why not)."""
    horizon = (config or TrainingConfig()).churn_horizon_days
    data = interactions
    if end is not None:
        data = data.loc[data["timestamp"].lt(pd.Timestamp(end))]
    try:
        return churn_figures(data, split, horizon, catalog)
    except ValueError as exc:  # too little history for the churn windows, or one class
        return {"skipped": str(exc)}


def churn_verdicts(churn: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in churn.get("intervals", {}).get("comparisons", {}).items():
        for metric, d in row.items():
            lines.append(
                f"churn {metric}: model - {name} = {d['value']:+.4f} "
                f"[{d['lo']:+.4f}, {d['hi']:+.4f}]: {d['verdict']}"
            )
    return lines


def clv_figures(
    interactions: pd.DataFrame, as_of: pd.Timestamp, catalog: pd.DataFrame | None = None
) -> dict[str, Any]:
    """The CLV backtest (``training.clv_backtest``) with the served model's deciles."""
    backtest = clv_backtest(interactions, as_of, catalog)
    actual, predicted = backtest.pop("actual"), backtest.pop("predicted")

    def compare(pred: np.ndarray) -> dict[str, float]:
        return {
            "pearson": float(pearsonr(pred, actual)[0]),
            "spearman": float(spearmanr(pred, actual)[0]),
            "mae": float(np.mean(np.abs(pred - actual))),
            "mean_predicted": float(np.mean(pred)),
        }

    served = predicted[SERVED]
    order = np.argsort(served, kind="stable")
    deciles = [
        {
            "decile": n + 1,
            "customers": int(len(rows)),
            "mean_predicted": float(served[rows].mean()),
            "mean_actual": float(actual[rows].mean()),
        }
        for n, rows in enumerate(np.array_split(order, 10))
        if len(rows)
    ]
    return {
        **backtest,
        "deciles": deciles,  # customers by predicted spend, lowest first
        **{name: compare(pred) for name, pred in predicted.items()},
    }


def customer_report(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    split: pd.Timestamp,
    config: TrainingConfig | None,
    end: Any = None,
) -> dict[str, Any]:
    """The CLV backtest at ``split`` and the segment and journey-stage distributions of the
    customers known at ``split`` (as the bundle trained there would hold them)."""
    from training.customers import train_customer_models

    data = interactions
    if end is not None:
        data = data.loc[data["timestamp"].lt(pd.Timestamp(end))]
    out: dict[str, Any] = {}
    try:
        out["clv_backtest"] = clv_figures(data, split, catalog)
    except ValueError as exc:
        out["clv_backtest"] = {"skipped": str(exc)}
    horizon = (config or TrainingConfig()).churn_horizon_days
    described = train_customer_models(data, split, catalog, horizon_days=horizon).features
    for column in ("segment", "journey_stage"):
        groups = described.groupby(column, observed=True)
        table = pd.DataFrame(
            {
                "customers": groups.size(),
                "mean_clv": groups["clv"].mean(),
                "mean_churn_risk": groups["churn_risk"].mean(),
            }
        ).sort_values("customers", ascending=False)
        out[f"{column}s"] = [
            {
                column: str(name),
                "customers": int(row["customers"]),
                "mean_clv": _finite(row["mean_clv"]),
                "mean_churn_risk": _finite(row["mean_churn_risk"]),
            }
            for name, row in table.to_dict("index").items()
        ]
    out["customers"] = int(len(described))
    return out


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None  # JSON has no NaN


def evaluate_customers(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp | str,
    horizon_days: int = 90,
    catalog: pd.DataFrame | None = None,
) -> dict[str, Any]:
    as_of = pd.Timestamp(as_of)
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "horizon_days": horizon_days,
        "churn": churn_figures(interactions, as_of, horizon_days, catalog),
        "clv_backtest": clv_figures(interactions, as_of, catalog),
    }


def _table(figures: dict[str, Any]) -> str:
    lines = [f"churn, test {figures['churn']['label_window']} (features before as_of):"]
    lines.append(f"  {'':14s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'Brier':>8s} {'lift@10%':>9s}")
    for name, m in figures["churn"]["test"].items():
        lines.append(
            f"  {name:14s} {m['roc_auc']:8.4f} {m['pr_auc']:8.4f} {m['brier']:8.4f} "
            f"{m['top_decile_lift']:9.3f}"
        )
    clv = figures["clv_backtest"]
    lines.append(
        f"CLV backtest: predicted vs actual net spend over the {clv['period_days']} days after "
        f"as_of, {clv['customers']} customers (mean actual {clv['mean_actual']:.2f}):"
    )
    for name in (SERVED, LEARNED, NAIVE):
        if name not in clv:
            continue
        c = clv[name]
        lines.append(
            f"  {name:18s} pearson {c['pearson']:.4f}  spearman {c['spearman']:.4f}  "
            f"MAE {c['mae']:.2f}  mean predicted {c['mean_predicted']:.2f}"
        )
    lines.append(f"  served: {clv['choice']['served']} ({clv['choice']['why']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys.io.loaders import load_interactions

    parser = argparse.ArgumentParser(prog="python -m training.customer_eval")
    parser.add_argument("--events", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--format", default="auto")
    parser.add_argument("--catalog", default=None)
    parser.add_argument("--json", action="store_true", help="print the full JSON report")
    args = parser.parse_args(argv)
    loaded = load_interactions(args.events, args.format, args.catalog)
    figures = evaluate_customers(loaded.interactions, args.as_of, args.horizon_days, loaded.catalog)
    print(json.dumps(figures, indent=2) if args.json else _table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
