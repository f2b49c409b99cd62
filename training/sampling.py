"""A bounded random sample of customers, with every one of their events: the work that only
measures or tunes a model (``train``'s hold-out metrics, the learned ranker's time-shifted
windows) costs the same at a million customers as at a few hundred thousand.

A sampled customer keeps all their rows, so per-customer histories, labels and features are
exactly those of the full table; guest rows (no customer id) are kept at the same rate, whole
orders at a time. Below the bound the table is returned as it is (no copy): a shop of that
size, like the shared data, trains exactly as without sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CustomerSample:
    """The sampled rows and what the manifest records about them."""

    interactions: pd.DataFrame
    customers: int  # distinct customers kept
    of_customers: int  # distinct customers in the table given

    @property
    def sampled(self) -> bool:
        return self.customers < self.of_customers

    def to_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "of_customers": self.of_customers}


def sample_customers(
    interactions: pd.DataFrame, max_customers: int | None, seed: int
) -> CustomerSample:
    """The rows of a uniform random sample (fixed by ``seed``) of at most ``max_customers``
    customers, and a matching share of the guest orders; the table itself when it has no
    more customers than that (or ``max_customers`` is None)."""
    ids = interactions["customer_id"]
    known = ids.dropna().unique()
    total = len(known)
    if max_customers is None or total <= max_customers:
        return CustomerSample(interactions, total, total)
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.asarray(known, dtype=object).astype(str))
    chosen = chosen[np.sort(rng.choice(total, max_customers, replace=False))]
    keep = ids.isin(chosen).to_numpy(dtype=bool, na_value=False)
    guest = ids.isna().to_numpy()
    if guest.any():
        codes, orders = pd.factorize(interactions["order_id"].where(guest))
        kept_orders = rng.random(len(orders)) < max_customers / total
        no_order = codes < 0  # a guest row without an order id: its own draw
        draw = rng.random(len(codes)) < max_customers / total
        keep = keep | (guest & np.where(no_order, draw, kept_orders[np.maximum(codes, 0)]))
    return CustomerSample(interactions.loc[keep], max_customers, total)
