"""Events file → model bundle: load, build every array, write a new version atomically.

:func:`training.build.build_bundle` does the work in memory (tests use it directly);
:func:`train_bundle` adds the file I/O, a hold-out evaluation for the manifest's offline metrics,
and :func:`write_bundle`. A failure anywhere before the write leaves the output directory's
``LATEST`` untouched.
"""

from __future__ import annotations

import time
from collections.abc import Container
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from recsys.bundle import ModelBundle, write_bundle
from recsys.config import TrainingConfig, get_settings
from recsys.errors import InvalidRequestError
from recsys.io.loaders import load_interactions
from recsys.io.progress import Steps
from recsys.ranking.scoring import RankingParams
from training.build import build_bundle, resolve_as_of
from training.email_items import email_items
from training.evaluate import BASELINES, METHODS, evaluate_split
from training.interactions import excluded_rows, rows_before
from training.ranker import with_rankers
from training.sampling import sample_customers

#: Days at the end of the window held out to compute the manifest's offline metrics.
HOLDOUT_DAYS = 28


def train_bundle(
    events_path: Path | str,
    out_dir: Path | str,
    fmt: str = "auto",
    catalog_path: Path | str | None = None,
    as_of: Any = None,
    config: TrainingConfig | None = None,
    exclude_customers: Container[str] = frozenset(),
    *,
    ranking: RankingParams | None = None,
    holdout_days: int | None = HOLDOUT_DAYS,
) -> Path:
    """Load ``events_path``, train on events before ``as_of`` and write a new version.

    The manifest's ``metrics["offline"]`` come from a second, smaller training that holds out
    the last ``holdout_days`` of the window (None skips it), trained on the events of a fixed
    random sample of at most ``config.holdout_training_customers`` customers and scored on one
    of at most ``config.holdout_customers``. Returns the version directory.
    """
    started = time.perf_counter()
    config = config or TrainingConfig()
    holdout = ["holdout metrics"] if holdout_days else []
    steps = Steps("train", ["load", "build", "ranker", "email items", *holdout, "write"])
    steps.step("load")
    loaded = load_interactions(Path(events_path), fmt=fmt, catalog_path=catalog_path)
    interactions = loaded.interactions
    resolved = resolve_as_of(interactions, as_of)
    _release_memory()
    steps.step("build")
    bundle = build_bundle(
        interactions,
        loaded.catalog,
        resolved,
        config,
        ranking=ranking,
        exclude_customers=exclude_customers,
        source=str(events_path),
        fmt=loaded.format,
        load_report=loaded.report.to_dict(),
    )
    _release_memory()
    steps.step("ranker")
    kept = interactions
    if exclude_customers:
        kept = kept.loc[~excluded_rows(kept["customer_id"], exclude_customers)]
    bundle = with_rankers(bundle, kept, loaded.catalog, resolved, config)
    steps.step("email items")
    bundle.email_items = email_items(bundle, compact=get_settings().serving.compact_vectors)
    if holdout_days:
        _release_memory()
        steps.step("holdout metrics")
        bundle.manifest.metrics["offline"] = _holdout_metrics(
            interactions,
            loaded.catalog,
            resolved,
            config,
            bundle,
            holdout_days,
            exclude_customers,
            catalog_is_derived=catalog_path is None,
        )
    bundle.manifest.training_seconds = time.perf_counter() - started
    _release_memory()
    steps.step("write")
    path = write_bundle(bundle, Path(out_dir))
    steps.close()
    return path


def _release_memory() -> None:
    """Hand Arrow's freed pages back to the system between steps: its allocator keeps them,
    and at a million customers each step frees gigabytes of filtered string columns."""
    pa.default_memory_pool().release_unused()


def _holdout_metrics(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    as_of: pd.Timestamp,
    config: TrainingConfig,
    bundle: ModelBundle,
    holdout_days: int,
    exclude_customers: Container[str],
    catalog_is_derived: bool,
) -> dict[str, Any]:
    split = as_of - pd.Timedelta(days=holdout_days)
    window = rows_before(interactions, as_of)
    if exclude_customers:
        window = window.loc[~excluded_rows(window["customer_id"], exclude_customers)]
    sample = sample_customers(window, config.holdout_training_customers, config.random_state)
    del window
    # a sampled (large) shop: the ranking figures only; the tuned baselines (item-bound EASE
    # inversions) and the churn and CLV reports are ``recsys evaluate``'s at that size
    methods = tuple(m for m in METHODS if m not in BASELINES) if sample.sampled else METHODS
    try:
        metrics = evaluate_split(
            sample.interactions,
            catalog,
            split,
            config,
            ranking=RankingParams.from_dict(bundle.manifest.params["ranking"]),
            k_values=(10, 20),
            catalog_is_derived=catalog_is_derived,
            max_customers=config.holdout_customers,
            methods=methods,
            with_churn=not sample.sampled,
        )
    except InvalidRequestError as exc:
        return {"skipped": str(exc)}
    metrics["customer_sample"] = sample.to_dict()
    if sample.sampled:
        metrics["customer_sample"]["left_out"] = [*BASELINES, "churn", "customers"]
    return metrics
