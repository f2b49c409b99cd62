"""The offers' items ranked at training (``email_items.npz``, ``training.email_items``), served
where they are what ranking would give.

Training ranks, for every customer of the bundle, the items of an offer without page context
(``serving.offers.items_query`` by email, or on the web without recent views) from the record a
bulk load stores and with the bundle's own catalogue. A customer takes that row instead of
being ranked when nothing of it can differ:

* the version's store holds the records training assumed (:class:`StoreFormat`: vectors as
  float16 or not, no history cut by a cap), checked once at load;
* the catalogue blocks exactly the items training assumed (checked once per catalogue
  revision: :attr:`serving.model_state.ItemCatalogue.email_items_valid`);
* the query is the one ranked (``k`` items, bought ones allowed) and, with page context, the
  customer has no recent views;
* the customer has their batch record and no live purchases, folded-in vector or dislikes
  (what ``serving.offers.scoring_inputs`` would take from the live record).

Anyone else is ranked as before. A bundle without the file is served as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.bundle import ModelBundle
from recsys.store import CustomerState

log = logging.getLogger("recsys.serving")


@dataclass(frozen=True)
class StoreFormat:
    """How the bulk load writes the records (``serving.compact_vectors``,
    ``serving.max_history_items``)."""

    compact: bool
    max_history: int | None


@dataclass(frozen=True)
class EmailItems:
    """Each customer's precomputed item rows, in the order of ``ModelState.customer_ids``."""

    customer_ids: np.ndarray  # U, sorted, unique
    rows: np.ndarray  # i4 (customers, k), -1 pads
    blocked: np.ndarray  # bool per item: the catalogue's blocked set the rows assume

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])

    @classmethod
    def from_bundle(
        cls, bundle: ModelBundle, store: StoreFormat, customer_ids: np.ndarray | None = None
    ) -> EmailItems | None:
        """The bundle's rows, or None where it has none or the store's records differ from
        the ones they were ranked from (logged); ``customer_ids``: the bundle's ids sorted and
        unique, where the caller holds them already (kept instead of a copy)."""
        arrays = bundle.email_items
        if not arrays or "rows" not in arrays:
            return None
        rows = np.asarray(arrays["rows"], dtype=np.int32)
        ids = np.asarray(bundle.customer_ids).astype(str)
        lengths = np.diff(bundle.history.indptr)
        longest = int(lengths.max(initial=0))
        why = None
        if bool(arrays["compact"]) != store.compact:
            why = f"ranked with compact vectors {bool(arrays['compact'])}, stored {store.compact}"
        elif store.max_history is not None and longest > store.max_history:
            why = f"histories of up to {longest} items, stored at most {store.max_history}"
        elif rows.ndim != 2 or rows.shape[0] != len(ids):
            why = f"{rows.shape} rows for {len(ids)} customers"
        unique, first = np.unique(ids, return_index=True)
        if why is None and len(unique) != len(ids):
            why = "customer ids repeat"
        if why is not None:
            log.warning("version %s: precomputed offer items not used: %s", bundle.version, why)
            return None
        blocked = np.asarray(arrays["blocked"], dtype=bool)
        if customer_ids is not None and np.array_equal(customer_ids, unique):
            unique = customer_ids
        return cls(unique, np.ascontiguousarray(rows[first]), blocked)

    def lookup(
        self, customers: Sequence[CustomerState], views: bool, item_ids: Sequence[str]
    ) -> list[list[str] | None]:
        """Each customer's items, or None where they must be ranked (module docstring;
        ``views``: the query takes recent views as context)."""
        out: list[list[str] | None] = [None] * len(customers)
        idle = [
            i
            for i, c in enumerate(customers)
            if c.batch is not None
            and c.live.user_vector is None
            and not c.live.purchased
            and not c.live.disliked
            and not (views and c.live.recent_views)
        ]
        if not idle or not len(self.customer_ids):
            return out
        asked = np.array([customers[i].customer_id for i in idle], dtype=str)
        at = np.searchsorted(self.customer_ids, asked)
        np.minimum(at, len(self.customer_ids) - 1, out=at)
        found = self.customer_ids[at] == asked
        for i, row, hit in zip(idle, at.tolist(), found.tolist(), strict=True):
            if hit:
                out[i] = [item_ids[r] for r in self.rows[row].tolist() if r >= 0]
        return out
