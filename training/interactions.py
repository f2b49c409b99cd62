"""The interaction table (``recsys.schema``) → index maps and weighted customer x item matrices.

What counts as a purchase for collaborative filtering: ``purchase`` rows of ``is_product`` items
by a known customer. The weight of a (customer, item) pair is the number of distinct orders that
contained the item (invoice counts did better than quantities on the shared data). Returns
subtract units: a pair whose returned units reach its purchased units is dropped, from CF and
from the purchase history alike, so a fully returned item is neither "bought" nor "buy again".
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.bundle import ItemTable

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class PurchaseMatrices:
    """Customer x item matrices over fixed index maps (rows: customers, columns: items)."""

    customer_ids: np.ndarray  # U, sorted
    item_ids: np.ndarray  # U, sorted
    orders: sp.csr_matrix  # f4: distinct orders containing the item (the CF weight)
    last_days: sp.csr_matrix  # f4, same sparsity: days from the last purchase to as_of

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.customer_ids), len(self.item_ids))


def rows_before(frame: pd.DataFrame, cutoff: Any) -> pd.DataFrame:
    """The rows of ``frame`` with a timestamp before ``cutoff``, without copying where it can:
    the frame itself when that is every row, a view of its first rows when they are the ones
    (the loaders sort the table by time), a copy only otherwise. At a million customers the
    table is gigabytes, and each training step used to copy it whole."""
    keep = frame["timestamp"].lt(cutoff).to_numpy(dtype=bool)
    n = int(np.count_nonzero(keep))
    if n == len(keep):
        return frame
    if keep[:n].all():
        return frame.iloc[:n]
    return frame.loc[keep]


def excluded_rows(customer_ids: pd.Series, exclude: Container[str]) -> pd.Series:
    """Which rows belong to a customer in ``exclude``: a set, or the store's erased set (which
    answers ``id in it`` by a keyed digest and cannot list its ids), asked once per customer."""
    present = [c for c in customer_ids.unique() if c in exclude]
    return customer_ids.isin(present)


def index_of(ids: np.ndarray, values: pd.Series | np.ndarray) -> np.ndarray:
    """Row of each value in the sorted ``ids`` (-1 when absent).

    A string column (millions of event rows, a fraction of them distinct) is looked up once
    per distinct value: the same answer per value (its ``str``, missing ones included), at a
    fraction of the cost of converting and binary-searching every row."""
    if len(ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        codes, distinct = pd.factorize(values, use_na_sentinel=False)
        return _rows_in(ids, np.asarray(distinct, dtype=object).astype(str))[codes]
    return _rows_in(ids, np.asarray(values, dtype=object).astype(str))


def _rows_in(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(ids, values), 0, len(ids) - 1)
    return np.where(ids[pos] == values, pos, -1).astype(np.int64)


def sorted_ids(*columns: pd.Series) -> np.ndarray:
    """The sorted distinct non-missing string ids found in ``columns``."""
    parts = [c.dropna().astype(str).unique() for c in columns]
    merged = np.concatenate(parts) if parts else np.zeros(0, dtype=str)
    return np.unique(merged.astype(str))


def product_purchases(interactions: pd.DataFrame) -> pd.DataFrame:
    """Purchase and return rows of products by known customers (the rows CF learns from)."""
    df = interactions
    mask = (
        df["event_type"].isin(["purchase", "return"])
        & df["customer_id"].notna()
        & df["item_id"].notna()
        & df["is_product"].astype(bool)
    )
    return df.loc[
        mask, ["customer_id", "item_id", "event_type", "timestamp", "quantity", "order_id"]
    ]


def build_purchase_matrices(
    interactions: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    as_of: pd.Timestamp,
) -> PurchaseMatrices:
    """Order counts and days since the last purchase, per (customer, item), net of returns."""
    rows = product_purchases(interactions)
    cust = index_of(customer_ids, rows["customer_id"])
    item = index_of(item_ids, rows["item_id"])
    keep = (cust >= 0) & (item >= 0)
    rows, cust, item = rows[keep], cust[keep], item[keep]
    is_buy = (rows["event_type"] == "purchase").to_numpy()
    qty = rows["quantity"].fillna(1.0).abs().to_numpy(dtype=np.float64)

    order_codes, _ = pd.factorize(rows["order_id"])
    missing = order_codes < 0  # no order id: every purchase row is its own order
    order_codes = order_codes.astype(np.int64)
    order_codes[missing] = order_codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))

    frame = pd.DataFrame(
        {
            "c": cust,
            "i": item,
            "o": order_codes,
            "buy": is_buy,
            "bought": np.where(is_buy, qty, 0.0),
            "returned": np.where(is_buy, 0.0, qty),
            "t": rows["timestamp"].to_numpy(dtype="datetime64[ns]"),
        }
    )
    buys = frame[frame["buy"]]
    orders = buys.drop_duplicates(["c", "i", "o"]).groupby(["c", "i"]).size().rename("orders")
    last = buys.groupby(["c", "i"])["t"].max().rename("last")
    units = frame.groupby(["c", "i"])[["bought", "returned"]].sum()
    pairs = pd.concat([orders, last], axis=1).join(units, how="left")
    pairs = pairs[pairs["bought"] > pairs["returned"]]

    c = pairs.index.get_level_values("c").to_numpy(dtype=np.int64)
    i = pairs.index.get_level_values("i").to_numpy(dtype=np.int64)
    as_of_ns = np.datetime64(pd.Timestamp(as_of).as_unit("ns").to_datetime64(), "ns")
    age = (as_of_ns - pairs["last"].to_numpy(dtype="datetime64[ns]")) / np.timedelta64(1, "s")
    age_days = np.maximum(age / SECONDS_PER_DAY, 0.0)
    shape = (len(customer_ids), len(item_ids))
    orders_m, last_m = same_pattern_csr(
        c, i, shape, pairs["orders"].to_numpy(dtype=np.float32), age_days.astype(np.float32)
    )
    return PurchaseMatrices(customer_ids, item_ids, orders_m, last_m)


def same_pattern_csr(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], *values: np.ndarray
) -> list[sp.csr_matrix]:
    """One canonical f4 CSR per ``values`` array, all sharing one sparsity pattern.

    ``(rows, cols)`` must be unique pairs. Zeros in ``values`` stay stored, so the matrices keep
    identical ``indptr``/``indices`` (the bundle stores one pattern for counts and ages).
    """
    position = sp.csr_matrix(
        (np.arange(1, len(rows) + 1, dtype=np.float64), (rows, cols)), shape=shape
    )
    position.sort_indices()
    order = position.data.astype(np.int64) - 1
    return [
        sp.csr_matrix(
            (
                np.asarray(v, dtype=np.float32)[order],
                position.indices.copy(),
                position.indptr.copy(),
            ),
            shape=shape,
        )
        for v in values
    ]


def item_table(
    item_ids: np.ndarray, interactions: pd.DataFrame, catalog: pd.DataFrame | None
) -> ItemTable:
    """The bundle's item table over ``item_ids``: catalogue fields where the catalogue has the
    item (else the id as title, no category, unknown price, in stock); ``is_product`` False
    when the events flag the item as a non-product."""
    n = len(item_ids)
    titles = item_ids.astype(object).copy()
    categories = np.full(n, "", dtype=object)
    prices = np.full(n, np.nan, dtype=np.float32)
    in_stock = np.ones(n, dtype=bool)
    if catalog is not None and len(catalog):
        cat = catalog.dropna(subset=["item_id"]).drop_duplicates("item_id", keep="last")
        rows = index_of(item_ids, cat["item_id"])
        ok = rows >= 0
        cat, rows = cat.loc[ok], rows[ok]
        if "title" in cat:
            t = cat["title"].astype("string")
            has = (t.notna() & t.str.len().gt(0)).to_numpy(dtype=bool)
            titles[rows[has]] = t.to_numpy(dtype=object)[has]
        if "category" in cat:
            c = cat["category"].astype(object).where(cat["category"].notna(), "").to_numpy()
            categories[rows] = c
        if "price" in cat:
            prices[rows] = pd.to_numeric(cat["price"], errors="coerce").to_numpy(np.float32)
        if "in_stock" in cat:
            stock = cat["in_stock"].astype(object).where(cat["in_stock"].notna(), True)
            in_stock[rows] = stock.astype(bool).to_numpy()
    is_product = np.ones(n, dtype=bool)
    flagged = interactions.loc[interactions["item_id"].notna(), ["item_id", "is_product"]]
    if len(flagged):
        per_item = flagged.groupby(flagged["item_id"].astype(str))["is_product"].min()
        rows = index_of(item_ids, per_item.index.to_numpy())
        ok = rows >= 0
        is_product[rows[ok]] = per_item.to_numpy(dtype=bool)[ok]
    return ItemTable(
        item_ids=item_ids.astype(str),
        titles=titles.astype(str),
        categories=categories.astype(str),
        prices=prices,
        in_stock=in_stock,
        is_product=is_product,
    )


def buyer_keys(purchases: pd.DataFrame, customer_ids: np.ndarray) -> np.ndarray:
    """One integer per buyer: the customer row, or for a guest checkout one key per order."""
    keys = index_of(customer_ids, purchases["customer_id"])
    guest = keys < 0
    if guest.any():
        orders, _ = pd.factorize(purchases["order_id"].where(guest.tolist()))
        orders = orders.astype(np.int64)
        orders[orders < 0] = orders.max(initial=-1) + 1 + np.arange(int((orders < 0).sum()))
        keys[guest] = len(customer_ids) + orders[guest]
    return keys
