"""Bootstrap intervals over customers, in numpy: means, paired differences, ROC-AUC, Brier.

A bootstrap replicate draws the ``n`` customers with replacement; it is represented by the
number of times each customer is drawn (:func:`resample_weights`, a ``(n_boot, n)`` matrix), so
every statistic of a replicate is a weighted one and one weight matrix serves every method:
the comparison of two methods on the *same* replicates is the paired bootstrap. Intervals are
the 2.5th and 97.5th percentiles of the replicates (``level`` 0.95), around the statistic of
the full sample.

A difference is called significant only when its interval excludes 0 (:func:`verdict`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def resample_weights(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` float32 draw counts: each row sums to ``n``."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one customer")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float32)


def _interval(point: float, reps: np.ndarray, level: float) -> dict[str, float]:
    tail = 50.0 * (1.0 - level)
    lo, hi = np.nanpercentile(reps, [tail, 100.0 - tail])
    return {"value": float(point), "lo": float(lo), "hi": float(hi)}


def mean_interval(
    values: np.ndarray, weights: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    """The mean of per-customer ``values`` and its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    reps = (weights @ v) / weights.sum(axis=1)
    return _interval(float(v.mean()), reps, level)


def paired_difference(
    a: np.ndarray, b: np.ndarray, weights: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    """``mean(a) - mean(b)`` over the same customers, with its paired bootstrap interval."""
    return mean_interval(np.asarray(a, np.float64) - np.asarray(b, np.float64), weights, level)


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each weight row (ties count one half): ``(n_boot,)`` for ``(n_boot, n)``."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    s = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels)[order].astype(bool)
    w = w[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def auc_interval(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    point = weighted_auc(scores, labels, np.ones((1, len(labels))))[0]
    return _interval(float(point), weighted_auc(scores, labels, weights), level)


def auc_difference(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray, weights: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    """ROC-AUC of ``a`` minus that of ``b`` on the same replicates."""
    ones = np.ones((1, len(labels)))
    point = weighted_auc(a, labels, ones)[0] - weighted_auc(b, labels, ones)[0]
    reps = weighted_auc(a, labels, weights) - weighted_auc(b, labels, weights)
    return _interval(float(point), reps, level)


def verdict(difference: dict[str, float], a: str, b: str, higher_is_better: bool = True) -> str:
    """``"a beats b"``, ``"b beats a"`` or ``"no significant difference"`` from an interval."""
    lo, hi = difference["lo"], difference["hi"]
    if lo > 0:
        return f"{a} beats {b}" if higher_is_better else f"{b} beats {a}"
    if hi < 0:
        return f"{b} beats {a}" if higher_is_better else f"{a} beats {b}"
    return "no significant difference"


def binary_intervals(
    labels: np.ndarray, scores: dict[str, np.ndarray], reference: str, seed: int = 0
) -> dict[str, Any]:
    """ROC-AUC and Brier (with intervals) per scorer, mean predicted vs actual, and ``reference``
    compared with every other scorer (paired: the same customers in every replicate)."""
    y = np.asarray(labels, dtype=np.float64)
    w = resample_weights(len(y), seed=seed)
    out: dict[str, Any] = {"actual_rate": mean_interval(y, w), "scorers": {}, "comparisons": {}}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        out["scorers"][name] = {
            "roc_auc": auc_interval(s, y, w),
            "brier": mean_interval((s - y) ** 2, w),
            "mean_predicted": mean_interval(s, w),
        }
    ref = np.asarray(scores[reference], dtype=np.float64)
    for name, s in scores.items():
        if name == reference:
            continue
        s = np.asarray(s, dtype=np.float64)
        auc = auc_difference(ref, s, y, w)
        brier = paired_difference((ref - y) ** 2, (s - y) ** 2, w)
        out["comparisons"][name] = {
            "roc_auc_difference": {**auc, "verdict": verdict(auc, reference, name)},
            "brier_difference": {
                **brier,
                "verdict": verdict(brier, reference, name, higher_is_better=False),
            },
        }
    return out


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins of predicted probability: count, mean predicted, actual rate."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        hit = which == b
        if hit.any():
            rows.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "n": int(hit.sum()),
                    "mean_predicted": float(p[hit].mean()),
                    "actual_rate": float(y[hit].mean()),
                }
            )
    return rows


def ranking_intervals(
    per_user: dict[str, dict[str, np.ndarray]], reference: str = "served", seed: int = 0
) -> dict[str, Any]:
    """Per method and metric the mean with its interval; ``reference`` minus every other method
    (paired: the same customers in every replicate) with a verdict.

    ``per_user``: method -> metric name -> per-customer values (the same customers, in order).
    """
    first = next(iter(per_user.values()), {})
    n = len(next(iter(first.values()))) if first else 0
    out: dict[str, Any] = {"methods": {}, "comparisons": {}}
    if n == 0:
        return out
    w = resample_weights(n, seed=seed)
    for method, metrics in per_user.items():
        out["methods"][method] = {name: mean_interval(v, w) for name, v in metrics.items()}
    ref = per_user.get(reference)
    if ref is None:
        return out
    for method, metrics in per_user.items():
        if method == reference:
            continue
        row = {}
        for name, v in metrics.items():
            diff = paired_difference(ref[name], v, w)
            row[name] = {**diff, "verdict": verdict(diff, reference, method)}
        out["comparisons"][method] = row
    return out


def verdicts(intervals: dict[str, Any], k: int | None = None) -> list[str]:
    """One line per task, metric and baseline: served minus it, its interval and the verdict
    (only the metrics at ``k`` when given)."""
    lines = []
    for task, block in intervals.items():
        for method, row in block.get("comparisons", {}).items():
            for name, d in row.items():
                if k is not None and not name.endswith(f"@{k}"):
                    continue
                lines.append(
                    f"{task} {name}: served - {method} = {d['value']:+.4f} "
                    f"[{d['lo']:+.4f}, {d['hi']:+.4f}]: {d['verdict']}"
                )
    return lines
