"""The contract between the domain and the online feature store.

:class:`FeatureStore` (and its async page-view part, :class:`AsyncFeatureReads`) is the one
contract; ``feature_store`` implements it on Redis, and serving, the tools and the tests depend on
it, not on Redis. A read is described once, as a :class:`ReadPlan`.

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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recsys.decisions.contacts import Contact

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


@dataclass(frozen=True)
class ReadPlan:
    """One read of the online store, described once: every reader executes it in one round
    trip. ``contacts``: also the offers sent (the offer routes); ``meta``: also the catalogue
    revision and the active version; ``page_view``: of the records, only what ranking uses (the
    factor vectors, the purchase history, views, cart, purchases and dislikes since training:
    no features, no online state), so an active customer's page view reads no more than a
    light one's. :meth:`page_view_of` is the page view's plan. ``answer`` (a page view's, 16
    bytes): the signature of the request's parameters; the read then also takes the live
    record's revision and the customer's stored answer, and the result is that answer, the
    records left undecoded, when its tag matches (``feature_store.answers``)."""

    version: str
    customer_ids: tuple[str, ...]
    contacts: bool = True
    meta: bool = False
    page_view: bool = False
    answer: bytes | None = None

    @classmethod
    def of(
        cls, version: str, customer_ids: Sequence[str], *, contacts: bool = True, meta: bool = False
    ) -> ReadPlan:
        return cls(version, tuple(customer_ids), contacts, meta)

    @classmethod
    def page_view_of(cls, version: str, customer_id: str, answer: bytes | None = None) -> ReadPlan:
        return cls(version, (customer_id,), False, True, True, answer)


@dataclass(frozen=True)
class ReadResult:
    """What a :class:`ReadPlan` read: states in the plan's order, the catalogue revision and the
    active version (0 and None when the plan did not ask for them). With the plan's ``answer``:
    the live record's revision as read (``b"0"``: none) and, when the stored answer's tag
    matched, its body, and then no states."""

    states: list[CustomerState]
    revision: int = 0
    active: str | None = None
    live_revision: bytes | None = None
    answer: bytes | None = None


class FeatureStore(Protocol):
    """The online feature store: what serving, training tools and the tests use of it.

    ``feature_store.redis_store.RedisFeatureStore`` implements it on Redis.
    """

    def read(self, plan: ReadPlan) -> ReadResult:
        """The plan's keys in one round trip."""
        ...

    def live_customer_ids(self, count: int = 1000) -> Iterator[list[str]]:
        """Ids of customers with a live record, about ``count`` at a time."""
        ...

    def load_version(self, version: str, records: Iterable[tuple[str, BatchRecord]]) -> int:
        """Bulk-load a version's batch records; returns how many were written."""
        ...

    def has_version(self, version: str) -> bool:
        """True only when a load of ``version`` completed."""
        ...

    def activate(self, version: str) -> None:
        """Atomically make ``version`` the active one."""
        ...

    def active_version(self) -> str | None: ...
    def previous_version(self) -> str | None: ...
    def delete_version(self, version: str) -> int: ...
    def item_revision(self) -> int: ...
    def item_overrides(self) -> dict[str, dict[str, Any]]: ...
    def set_item_override(self, item_id: str, fields: dict[str, Any]) -> int: ...
    def export_customer(self, customer_id: str) -> dict[str, Any]: ...
    def erase_customer(self, customer_id: str, *, known: bool = True) -> int: ...
    def ping(self) -> bool: ...


class AsyncFeatureReads(Protocol):
    """The page view's reads of the same store, awaited on the event loop
    (``feature_store.async_store.AsyncFeatureReader``)."""

    async def read(self, plan: ReadPlan) -> ReadResult: ...

    def store_answer(self, command: tuple[Any, ...], done: Callable[[str], None]) -> None:
        """Send the answer write-back ``command`` (``feature_store.answers.store_command``)
        without waiting for it; ``done`` gets ``"stored"``, ``"refused"`` or ``"failed"``."""
        ...

    async def item_revision(self) -> int: ...
    async def ping(self) -> bool: ...
    async def aclose(self) -> None: ...
