"""The churn recipe at several time splits: LightGBM alone against the served blend.

For each split date the recipe of ``training.churn.train_churn`` is trained on the events
before it and scored on every customer who bought before it (label: no purchase in the next
``horizon`` days, from the events after it), with ``blend_weight`` 1.0 (the trees alone, the
model served before the blend) and the served weight (``training.churn_blend.BLEND_WEIGHT``).
Each is compared with logistic regression on RFM fitted on the same training rows: ROC-AUC,
PR-AUC and Brier with 95% bootstrap intervals, the paired differences, and the mean predicted
risk against the actual rate at the split.

With ``--trained-at DATE`` every model is trained once, on the events before ``DATE``, and
scored at each later split (a model served for months without retraining: the customers scored
then have been quiet longer than any in its training windows).

    python -m benchmarks.churn_blend --events PATH [--splits 2011-04-01 2011-05-01 2011-06-01]
                                     [--trained-at 2011-04-01]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from training.bootstrap import binary_intervals
from training.churn import baseline_scores, build_window, train_churn
from training.churn_blend import BLEND_WEIGHT


def split_rows(
    events: pd.DataFrame,
    catalog: pd.DataFrame | None,
    split: pd.Timestamp,
    horizon: int,
    weights: Sequence[float],
    trained_at: pd.Timestamp | None = None,
) -> list[str]:
    test = build_window(events, split, horizon, catalog)
    trained_at = split if trained_at is None else trained_at
    past = events.loc[events["timestamp"].lt(trained_at)]
    lines = [f"split {split:%Y-%m-%d} (trained at {trained_at:%Y-%m-%d}): {len(test.labels)}"]
    lines[0] += f" customers, churn rate {np.mean(test.labels):.3f}"
    for weight in weights:
        start = time.process_time()
        artifacts = train_churn(past, trained_at, horizon, catalog, blend_weight=weight)
        seconds = time.process_time() - start
        scores = {"model": artifacts.predict(test.features)}
        scores["rfm_logistic"] = baseline_scores(artifacts.baselines, test.features)["rfm_logistic"]
        figures = binary_intervals(test.labels, scores, reference="model")
        diff = figures["comparisons"]["rfm_logistic"]
        for name, s in scores.items():
            f = figures["scorers"][name]
            auc, brier, mean = f["roc_auc"], f["brier"], f["mean_predicted"]
            label = f"weight {weight:.2f} {name}"
            lines.append(
                f"  {label:28s} ROC-AUC {auc['value']:.4f} [{auc['lo']:.4f}, {auc['hi']:.4f}]"
                f"  PR-AUC {average_precision_score(test.labels, s):.4f}"
                f"  Brier {brier['value']:.4f} [{brier['lo']:.4f}, {brier['hi']:.4f}]"
                f"  mean {mean['value']:.3f}"
            )
        d_auc, d_brier = diff["roc_auc_difference"], diff["brier_difference"]
        lines.append(
            f"  {'':28s} model - rfm_logistic: ROC-AUC {d_auc['value']:+.4f} "
            f"[{d_auc['lo']:+.4f}, {d_auc['hi']:+.4f}], Brier {d_brier['value']:+.4f} "
            f"[{d_brier['lo']:+.4f}, {d_brier['hi']:+.4f}]; train {seconds:.1f} s CPU"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys.io.loaders import load_interactions

    parser = argparse.ArgumentParser(prog="python -m benchmarks.churn_blend")
    parser.add_argument("--events", required=True)
    parser.add_argument("--splits", nargs="+", default=["2011-04-01", "2011-05-01", "2011-06-01"])
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--weights", nargs="+", type=float, default=[1.0, BLEND_WEIGHT])
    parser.add_argument("--trained-at", default=None, help="train once, before this date")
    args = parser.parse_args(argv)
    loaded = load_interactions(args.events)
    trained_at = pd.Timestamp(args.trained_at) if args.trained_at else None
    for split in args.splits:
        if trained_at is not None and pd.Timestamp(split) < trained_at:
            continue
        rows = split_rows(
            loaded.interactions,
            loaded.catalog,
            pd.Timestamp(split),
            args.horizon_days,
            args.weights,
            trained_at,
        )
        print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
