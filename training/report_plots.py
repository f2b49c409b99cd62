"""The figures of the evaluation report, drawn from ``report.json``'s dict (matplotlib, Agg).

Every function takes the report (or a part of it) and returns a ``Figure``; :func:`png` turns
one into PNG bytes. No pyplot: nothing global, safe in threads and without a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRIC_LABELS = {"ndcg": "NDCG", "recall": "Recall"}


def figure(width: float = 8.0, height: float = 4.5, **kwargs: Any) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def methods_of(tasks: dict[str, dict[str, Any]], order: Sequence[str]) -> list[str]:
    present = {m for by_method in tasks.values() for m in by_method}
    seen = [m for by_method in tasks.values() for m in by_method]
    rest = [m for m in dict.fromkeys(seen) if m not in order]
    return [m for m in order if m in present] + rest


def metric_bars(tasks: dict[str, Any], name: str, k: int, order: Sequence[str]) -> Figure:
    """Grouped bars of ``name@k``: one group per task, one bar per method."""
    fig = figure()
    ax = fig.add_subplot()
    methods = methods_of(tasks, order)
    width = 0.8 / max(len(methods), 1)
    task_names = list(tasks)
    for j, method in enumerate(methods):
        values = [tasks[t].get(method, {}).get(f"{name}@{k}", np.nan) for t in task_names]
        x = np.arange(len(task_names)) + (j - (len(methods) - 1) / 2) * width
        bars = ax.bar(x, values, width, label=method)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(task_names)), task_names)
    ax.set_ylabel(f"{METRIC_LABELS.get(name, name)}@{k}")
    ax.set_title(f"{name}@{k} per method and task")
    ax.legend(fontsize=8)
    return fig


def metric_by_k(
    intervals: dict[str, Any], task: str, k_values: Sequence[int], order: Sequence[str]
) -> Figure:
    """NDCG and recall against k, one line per method, 95% bootstrap intervals as error bars."""
    fig = figure(10.0, 4.2)
    block = intervals.get(task, {}).get("methods", {})
    methods = methods_of({task: block}, order)
    for n, name in enumerate(("ndcg", "recall")):
        ax = fig.add_subplot(1, 2, n + 1)
        for j, method in enumerate(methods):
            rows = [block[method].get(f"{name}@{k}") for k in k_values]
            ks = [k for k, r in zip(k_values, rows, strict=True) if r]
            got = [r for r in rows if r]
            value = np.array([r["value"] for r in got])
            err = np.array(
                [[r["value"] - r["lo"] for r in got], [r["hi"] - r["value"] for r in got]]
            )
            x = np.array(ks, dtype=float) * (1.0 + 0.012 * (j - len(methods) / 2))  # no overlap
            width = 2.4 if method == "served" else 1.2
            ax.errorbar(
                x, value, yerr=err, marker="o", ms=3, capsize=2, label=method, linewidth=width
            )
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(list(k_values), [str(k) for k in k_values])
        ax.set_xlabel("k")
        ax.set_ylabel(f"{METRIC_LABELS[name]}@k")
        ax.set_title(f"{task}: {METRIC_LABELS[name]}@k (95% interval)")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    return fig


def exposure(tasks: dict[str, Any], task: str, k: int, order: Sequence[str]) -> Figure:
    """Coverage, mean popularity percentile and head share at ``k`` per method."""
    fig = figure(10.0, 3.6)
    by_method = tasks.get(task, {})
    methods = methods_of({task: by_method}, order)
    panels = (
        ("coverage", "catalogue coverage", None),
        ("popularity_pct", "mean popularity percentile", 0.5),
        ("head_share", "share of slots: top 10% sellers", 0.1),
    )
    for n, (name, title, catalogue) in enumerate(panels):
        ax = fig.add_subplot(1, 3, n + 1)
        values = [by_method[m].get(f"{name}@{k}", np.nan) for m in methods]
        bars = ax.barh(methods, values, color="#4c72b0")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        if catalogue is not None:
            ax.axvline(catalogue, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1.1)
        ax.invert_yaxis()
        ax.set_title(f"{task}: {title} @{k}", fontsize=9)
        if n:
            ax.set_yticklabels([])
    return fig


def roc(churn: dict[str, Any]) -> Figure:
    fig = figure(5.0, 4.5)
    ax = fig.add_subplot()
    for name, curve in churn.get("roc_curve", {}).items():
        auc = churn.get("test", {}).get(name, {}).get("roc_auc", float("nan"))
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("churn: ROC curve on the test customers")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _reliability_curve(ax: Any, bins: list[dict[str, Any]], label: str | None = None) -> None:
    """Mean predicted against actual rate per bin (marker size: customers), and the diagonal."""
    pred = [b["mean_predicted"] for b in bins]
    act = [b["actual_rate"] for b in bins]
    sizes = [12 + 60 * np.sqrt(b["n"] / max(1, max(x["n"] for x in bins))) for b in bins]
    ax.plot(pred, act, linewidth=1)
    ax.scatter(pred, act, s=sizes, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def reliability(churn: dict[str, Any]) -> Figure:
    fig = figure(5.0, 4.5)
    ax = fig.add_subplot()
    for name, rows in churn.get("reliability", {}).items():
        _reliability_curve(ax, rows, name)
    ax.set_xlabel("mean predicted churn probability (bin)")
    ax.set_ylabel("actual churn rate")
    ax.set_title("churn: reliability (marker size: customers)")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def reliability_by_cutoff(backtest: list[dict[str, Any]]) -> Figure:
    """The served model's reliability diagram at each backtest cutoff, one panel each."""
    rows = [row for row in backtest if "reliability" in row]
    fig = figure(4.0 * len(rows), 4.0)
    for n, row in enumerate(rows):
        ax = fig.add_subplot(1, len(rows), n + 1)
        _reliability_curve(ax, row["reliability"])
        mean = row["mean_predicted"]["model"]
        ax.set_title(f"{row['cutoff']}: rate {row['churn_rate']:.3f}, mean {mean:.3f}", fontsize=9)
        ax.set_xlabel("mean predicted (bin)")
        if n == 0:
            ax.set_ylabel("actual churn rate")
    return fig


def clv_deciles(clv: dict[str, Any]) -> Figure:
    fig = figure(7.0, 4.0)
    ax = fig.add_subplot()
    rows = clv.get("deciles", [])
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["mean_predicted"] for r in rows], 0.4, label="predicted")
    ax.bar(x + 0.2, [r["mean_actual"] for r in rows], 0.4, label="actual")
    ax.set_xticks(x, [str(r["decile"]) for r in rows])
    ax.set_xlabel("decile of predicted spend (1 = lowest)")
    ax.set_ylabel(f"mean net spend over {clv.get('period_days', '?')} days")
    ax.set_title("CLV backtest: BG/NBD x Gamma-Gamma, predicted vs actual")
    ax.legend(fontsize=8)
    return fig


def distribution(rows: list[dict[str, Any]], column: str, title: str) -> Figure:
    fig = figure(5.0, 0.6 + 0.32 * max(len(rows), 1))
    ax = fig.add_subplot()
    names = [r[column] for r in rows]
    bars = ax.barh(names, [r["customers"] for r in rows], color="#55a868")
    ax.bar_label(bars, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("customers")
    ax.set_title(title, fontsize=10)
    return fig
