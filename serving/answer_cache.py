"""The page view's exact answer cache: a repeat page view whose inputs did not change gets the
answer stored by the last one, bit-identical to ranking again, in the same one round trip.

What decides an answer, and how each change reaches the cache (``feature_store.answers``):

* the request's parameters: a 16-byte signature of them (:func:`signature`) is in the tag;
* the model version and the catalogue revision: in the tag (a swap or a catalogue change makes
  every stored answer miss, and the next page view stores the new one);
* the customer's records: the batch record never changes within a version; every event write
  bumps the live record's ``rev``, which is in the tag; an erasure deletes the answer key;
* the store down, no model: the fallback answers are never stored;
* the serving code and the settings that change answers: :data:`GENERATION` (bump it with a
  change of the ranking code that changes answers within a model version) and the process's
  ``salt`` (``retrieval_min_items``: exact or retrieved scoring) key the signature, so processes
  that would rank differently do not share answers.

A miss is computed as before, then written back (:meth:`AnswerCache.write_back`): one ``EVAL``
sent without waiting, that stores the answer only when the live ``rev`` is still the one read
and the customer still has a record. Outcomes are counted in ``recsys_answer_cache_total``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson

from feature_store import answers
from recsys.ranking.scoring import REASON_CODES
from serving.metrics import Metrics
from serving.recommend import Ranked, RecommendationQuery
from serving.state import CustomerRead, ServingState

#: Rendered answers kept per process (the items' JSON of a stored body): a repeat hit skips
#: decoding the body and serializing the items. At ~1.5 KB each for ``k`` = 10, a few MB.
MEMO_ENTRIES = 4096
Render = Callable[[Ranked], bytes]

#: The body's reason codes index this table; a reason outside it is not stored.
REASONS: tuple[str, ...] = REASON_CODES
#: The ranking code's generation: bump it when a change of the code changes the answers of a
#: model version (stored answers of the previous code then miss).
GENERATION = b"page-view-2"


def signature(query: RecommendationQuery, salt: bytes = b"") -> bytes:
    """16 bytes that differ for any two queries that may be answered differently (by processes
    of the same :data:`GENERATION` and ``salt``)."""
    task = "discovery" if query.exclude_purchased else "all"
    text = orjson.dumps(
        [
            query.k,
            query.context,
            query.item_id,
            query.exclude_purchased,
            list(query.exclude),
            query.category,
            task,
        ]
    )
    key = b"%s|%d|%s" % (GENERATION, answers.FORMAT, salt)
    return hashlib.blake2b(text, digest_size=16, key=key[:64]).digest()


class AnswerCache:
    """The cache's use by the page view: ``ttl_s`` 0 turns it off; ``prefix``: the store's;
    ``salt``: what of this process's settings changes answers (see the module docstring)."""

    def __init__(self, ttl_s: int, prefix: str, metrics: Metrics, salt: bytes = b"") -> None:
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.metrics = metrics
        self.salt = salt
        self._memo: dict[bytes, tuple[str, bytes]] = {}
        self._memo_owner: tuple[object, object] | None = None

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def signature(self, query: RecommendationQuery) -> bytes | None:
        """The query's signature to read with, or None when the cache is off."""
        return signature(query, self.salt) if self.enabled else None

    def hit(self, read: CustomerRead) -> tuple[str, Ranked] | None:
        """The strategy and items of the stored answer ``read`` found, counted as a hit; None
        (a miss, counted when the cache is on and the store was read) otherwise."""
        if read.answer is not None:
            try:
                strategy, rows, scores, reasons = answers.decode_body(read.answer, REASONS)
            except (ValueError, IndexError):
                pass  # written by another format: recomputed, and overwritten
            else:
                self.metrics.count_answer("hit")
                return strategy, Ranked(rows, scores, reasons)
        if self.enabled and read.live_revision is not None:
            self.metrics.count_answer("miss")
        return None

    def hit_rendered(self, read: CustomerRead, render: Render) -> tuple[str, bytes] | None:
        """As :meth:`hit`, with the items already rendered (``render`` of the stored ranking:
        the same bytes for the same body and snapshot, so they are kept per body while the
        snapshot's catalogue and item ids stay the same objects)."""
        body, snapshot = read.answer, read.snapshot
        if body is None or snapshot is None:
            return self._rendered(read, render)
        owner = (snapshot.catalog, snapshot.model.item_ids)
        memo_owner = self._memo_owner
        if memo_owner is None or memo_owner[0] is not owner[0] or memo_owner[1] is not owner[1]:
            self._memo.clear()
            self._memo_owner = owner
        rendered = self._memo.get(body)
        if rendered is not None:
            self.metrics.count_answer("hit")
            return rendered
        rendered = self._rendered(read, render)
        if rendered is not None:
            if len(self._memo) >= MEMO_ENTRIES:
                del self._memo[next(iter(self._memo))]  # the oldest
            self._memo[body] = rendered
        return rendered

    def _rendered(self, read: CustomerRead, render: Render) -> tuple[str, bytes] | None:
        stored = self.hit(read)
        return None if stored is None else (stored[0], render(stored[1]))

    def write_back(
        self,
        serving: ServingState,
        customer_id: str,
        read: CustomerRead,
        query_signature: bytes,
        strategy: str,
        ranked: Ranked,
    ) -> None:
        """Store the answer just computed from ``read``, without waiting for Redis: only a
        known customer's (a record to check against), never a fallback."""
        snapshot, customer = read.snapshot, read.customer
        if snapshot is None or customer is None or read.live_revision is None:
            return
        if not customer.known:
            return  # nothing held of them: nothing to invalidate it by, nothing to store
        body = answers.encode_body(strategy, ranked.rows, ranked.scores, ranked.reasons, REASONS)
        if body is None:
            return
        tag = answers.tag(
            snapshot.version, snapshot.catalog.revision, read.live_revision, query_signature
        )
        value = tag + body
        if len(value) > answers.MAX_VALUE_BYTES:
            self.metrics.count_answer("refused")
            return
        command = answers.store_command(
            self.prefix, customer_id, snapshot.version, read.live_revision, value, self.ttl_s
        )
        serving.reader.store_answer(command, self.metrics.count_answer)
