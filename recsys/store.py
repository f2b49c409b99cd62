"""The contract between the domain and the online feature store.

``feature_store.redis_store.RedisFeatureStore`` implements it on Redis; serving and training
code depend on these protocols, not on Redis.

A customer's online state has two parts:

* the **batch record** of one model version (features computed in training, the ALS factor
  vector, the purchase history as item rows of that version), written by a bulk load into that
  version's namespace and never changed afterwards, and
* the **live record**, shared by all versions: what happened since training (recent views,
  cart, purchases, dislikes, survey answers, a folded-in factor vector, online feature values,
  the offers sent to them: ``contacts``).

:class:`CustomerState` is both, read in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recsys.offers import Contact

_EMPTY_I4 = np.zeros(0, dtype=np.int32)
_EMPTY_F4 = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class BatchRecord:
    """What training knows of one customer, for one model version."""

    features: Mapping[str, Any]
    user_vector: np.ndarray | None = None  # f4 (factors,)
    history_items: np.ndarray = field(default_factory=lambda: _EMPTY_I4)  # i4 item rows
    history_counts: np.ndarray = field(default_factory=lambda: _EMPTY_F4)  # f4
    history_last_days: np.ndarray = field(default_factory=lambda: _EMPTY_F4)  # f4, at as_of


@dataclass(frozen=True)
class LiveRecord:
    """What happened since training; item ids are strings (valid across versions)."""

    recent_views: tuple[str, ...] = ()  # newest first, bounded
    cart: tuple[str, ...] = ()
    purchased: Mapping[str, float] = field(default_factory=dict)  # item id -> units since training
    disliked: frozenset[str] = frozenset()
    features: Mapping[str, Any] = field(default_factory=dict)  # online feature values
    user_vector: np.ndarray | None = None  # folded-in vector, overrides the batch one
    user_vector_version: str | None = None  # the model version it was folded against
    contacts: tuple[Contact, ...] = ()  # offers sent (newest last, bounded by the reader)


@dataclass(frozen=True)
class CustomerState:
    customer_id: str
    batch: BatchRecord | None
    live: LiveRecord

    @property
    def known(self) -> bool:
        """True when the customer has a batch record or any live activity."""
        return self.batch is not None or bool(
            self.live.recent_views or self.live.cart or self.live.purchased or self.live.features
        )


class FeatureReader(Protocol):
    def read_customer(self, version: str, customer_id: str) -> CustomerState:
        """One round trip: the batch record of ``version`` and the live record."""
        ...

    def read_customers(self, version: str, customer_ids: Sequence[str]) -> list[CustomerState]:
        """One round trip for the whole sequence, answers in the same order."""
        ...


class FeatureWriter(Protocol):
    def load_version(self, version: str, records: Iterable[tuple[str, BatchRecord]]) -> int:
        """Bulk-load a version's batch records; returns how many were written."""
        ...

    def activate(self, version: str) -> None:
        """Atomically make ``version`` the active one."""
        ...

    def active_version(self) -> str | None: ...

    def has_version(self, version: str) -> bool:
        """True only when a load of ``version`` completed."""
        ...
