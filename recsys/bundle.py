"""The versioned model bundle: the one format ``training`` writes and ``serving`` reads.

A bundle is a directory ``ROOT/<version>/`` holding plain arrays (``.npz``, loaded with
``allow_pickle=False``), a Parquet feature table, an optional ONNX churn model and a
``manifest.json``. ``ROOT/LATEST`` names the newest complete version. Writing goes to a hidden
temporary directory that is renamed into place only when complete, and ``LATEST`` is replaced
atomically afterwards, so a failed run never leaves a half-written "latest" version.

Files (rows of every per-item array follow ``item_ids``; rows of every per-customer array
follow ``customer_ids``):

==================  ========================================================================
file                contents
==================  ========================================================================
manifest.json       :class:`Manifest`
items.npz           item_ids (U), titles (U), categories (U), prices (f8), in_stock (bool),
                    is_product (bool)
customers.npz       customer_ids (U)
factors.npz         user_factors (f4, n_customers x f), item_factors (f4, n_items x f)
neighbours.npz      indices (i4, n_items x K; -1 pads), scores (f4, n_items x K)
popularity.npz      popular (i4 item rows, best first), popular_scores (f4),
                    trending (i4), trending_scores (f4)
history.npz         CSR customer x item purchase history: indptr, indices, counts (f4),
                    last_days (f4: days between the item's last purchase and ``as_of``)
features.parquet    the customer feature table (column ``customer_id`` + one per feature)
churn.onnx          optional: the churn classifier (see ``recsys.customers.churn``)
extra.json          optional: JSON-able extras (churn calibration, offer catalogue, ...)
signals.npz         optional: the two-stage ranking's item signals
                    (``recsys.ranking.signals.ItemSignals``: EASE weights, rhythm, trend...)
ranker_<task>.onnx  optional: the learned ranker of a task (``discovery``, ``all``) where it
                    beat the blend on the validation window (``manifest.params["ranker"]``)
ranker_<task>.txt   optional: the same ranker's LightGBM model text (``Booster.model_to_string``),
                    which serving compiles to native code (``recsys.ranking.forest``)
email_items.npz     optional: every customer's items of an email offer, ranked at training
                    (``training.email_items``): rows (i4, n_customers x k; -1 pads), blocked
                    (bool per item: the catalogue's blocked set they assume), compact (bool:
                    float16 vectors in the store, as the bulk load writes by default)
==================  ========================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, Field

from recsys.errors import ModelUnavailableError

SCHEMA_VERSION = 1
LATEST_FILE = "LATEST"


class DataWindow(BaseModel):
    source: str
    format: str
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime
    load_report: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    version: str
    schema_version: int = SCHEMA_VERSION
    created_at: datetime
    data: DataWindow
    counts: dict[str, int] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_seconds: float | None = None
    files: dict[str, str] = Field(default_factory=dict)


@dataclass
class ItemTable:
    item_ids: np.ndarray
    titles: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    in_stock: np.ndarray
    is_product: np.ndarray

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


@dataclass
class ModelBundle:
    """Everything a serving process needs, as plain arrays."""

    manifest: Manifest
    items: ItemTable
    customer_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    neighbour_indices: np.ndarray
    neighbour_scores: np.ndarray
    popular: np.ndarray
    popular_scores: np.ndarray
    trending: np.ndarray
    trending_scores: np.ndarray
    history: sp.csr_matrix  # counts, customers x items
    history_last_days: sp.csr_matrix  # same sparsity, days since last purchase at as_of
    features: pd.DataFrame
    churn_onnx: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    ranker_onnx: dict[str, bytes] = field(default_factory=dict)
    ranker_text: dict[str, str] = field(default_factory=dict)  # task -> LightGBM model text
    email_items: dict[str, np.ndarray] = field(default_factory=dict)  # email_items.npz

    @property
    def version(self) -> str:
        return self.manifest.version


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version name: ``20261122T185000Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bundle(bundle: ModelBundle, root: Path) -> Path:
    """Write ``bundle`` as ``root/<version>`` atomically and point ``root/LATEST`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / bundle.version
    tmp = root / f".tmp-{bundle.version}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        items = bundle.items
        _save_npz(
            tmp / "items.npz",
            item_ids=items.item_ids.astype(str),
            titles=items.titles.astype(str),
            categories=items.categories.astype(str),
            prices=items.prices.astype(np.float64),
            in_stock=items.in_stock.astype(bool),
            is_product=items.is_product.astype(bool),
        )
        _save_npz(tmp / "customers.npz", customer_ids=bundle.customer_ids.astype(str))
        _save_npz(
            tmp / "factors.npz",
            user_factors=bundle.user_factors.astype(np.float32),
            item_factors=bundle.item_factors.astype(np.float32),
        )
        _save_npz(
            tmp / "neighbours.npz",
            indices=bundle.neighbour_indices.astype(np.int32),
            scores=bundle.neighbour_scores.astype(np.float32),
        )
        _save_npz(
            tmp / "popularity.npz",
            popular=bundle.popular.astype(np.int32),
            popular_scores=bundle.popular_scores.astype(np.float32),
            trending=bundle.trending.astype(np.int32),
            trending_scores=bundle.trending_scores.astype(np.float32),
        )
        history = bundle.history.tocsr()
        last_days = bundle.history_last_days.tocsr()
        _save_npz(
            tmp / "history.npz",
            indptr=history.indptr.astype(np.int64),
            indices=history.indices.astype(np.int32),
            counts=history.data.astype(np.float32),
            last_days=last_days.data.astype(np.float32),
            shape=np.asarray(history.shape, dtype=np.int64),
        )
        bundle.features.to_parquet(tmp / "features.parquet", index=False)
        if bundle.churn_onnx is not None:
            (tmp / "churn.onnx").write_bytes(bundle.churn_onnx)
        if bundle.signals:
            _save_npz(tmp / "signals.npz", **bundle.signals)
        if bundle.email_items:
            _save_npz(tmp / "email_items.npz", **bundle.email_items)
        for task, onnx in bundle.ranker_onnx.items():
            (tmp / f"ranker_{task}.onnx").write_bytes(onnx)
        for task, text in bundle.ranker_text.items():
            (tmp / f"ranker_{task}.txt").write_text(text)
        if bundle.extra:
            (tmp / "extra.json").write_text(json.dumps(bundle.extra, indent=2, default=str))
        bundle.manifest.files = {
            p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.name != "manifest.json"
        }
        (tmp / "manifest.json").write_text(bundle.manifest.model_dump_json(indent=2))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = root / f".{LATEST_FILE}.{uuid.uuid4().hex}"
    pointer_tmp.write_text(bundle.version + "\n")
    os.replace(pointer_tmp, root / LATEST_FILE)
    return final


def latest_version_dir(root: Path) -> Path:
    """The directory of the newest complete version under ``root``."""
    pointer = root / LATEST_FILE
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / "manifest.json").is_file():
            return candidate
    versions = (
        sorted(p for p in root.glob("*") if p.is_dir() and (p / "manifest.json").is_file())
        if root.is_dir()
        else []
    )
    if not versions:
        raise ModelUnavailableError(f"no model version found under {str(root)!r}")
    return versions[-1]


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate_json((version_dir / "manifest.json").read_text())


def read_bundle(version_dir: Path) -> ModelBundle:
    """Load a bundle written by :func:`write_bundle` (no pickles, no ``implicit``)."""
    try:
        manifest = read_manifest(version_dir)
        items = _load_npz(version_dir / "items.npz")
        factors = _load_npz(version_dir / "factors.npz")
        neighbours = _load_npz(version_dir / "neighbours.npz")
        popularity = _load_npz(version_dir / "popularity.npz")
        hist = _load_npz(version_dir / "history.npz")
        customers = _load_npz(version_dir / "customers.npz")
        signals_path = version_dir / "signals.npz"
        signals = _load_npz(signals_path) if signals_path.is_file() else {}
        email_path = version_dir / "email_items.npz"
        email_items = _load_npz(email_path) if email_path.is_file() else {}
        rankers = {
            path.stem.removeprefix("ranker_"): path.read_bytes()
            for path in sorted(version_dir.glob("ranker_*.onnx"))
        }
        texts = {
            path.stem.removeprefix("ranker_"): path.read_text()
            for path in sorted(version_dir.glob("ranker_*.txt"))
        }
    except (OSError, ValueError, KeyError) as exc:
        message = f"cannot read model bundle {str(version_dir)!r}: {exc}"
        raise ModelUnavailableError(message) from exc
    shape = tuple(int(x) for x in hist["shape"])
    history = sp.csr_matrix((hist["counts"], hist["indices"], hist["indptr"]), shape=shape)
    last_days = sp.csr_matrix((hist["last_days"], hist["indices"], hist["indptr"]), shape=shape)
    churn_path = version_dir / "churn.onnx"
    extra_path = version_dir / "extra.json"
    return ModelBundle(
        manifest=manifest,
        items=ItemTable(
            item_ids=items["item_ids"],
            titles=items["titles"],
            categories=items["categories"],
            prices=items["prices"],
            in_stock=items["in_stock"],
            is_product=items["is_product"],
        ),
        customer_ids=customers["customer_ids"],
        user_factors=factors["user_factors"],
        item_factors=factors["item_factors"],
        neighbour_indices=neighbours["indices"],
        neighbour_scores=neighbours["scores"],
        popular=popularity["popular"],
        popular_scores=popularity["popular_scores"],
        trending=popularity["trending"],
        trending_scores=popularity["trending_scores"],
        history=history,
        history_last_days=last_days,
        features=pd.read_parquet(version_dir / "features.parquet"),
        churn_onnx=churn_path.read_bytes() if churn_path.is_file() else None,
        extra=json.loads(extra_path.read_text()) if extra_path.is_file() else {},
        signals=signals,
        ranker_onnx=rankers,
        ranker_text=texts,
        email_items=email_items,
    )
