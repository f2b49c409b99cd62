"""The loaded model and catalogue of one serving process, and how they are swapped.

Everything a request needs is prepared here once, at load time: the ranking arrays, the item id
-> row dict, the catalogue as Python lists (cheap to serialize), the popularity blend and the
*base blocked mask* (non-product, out of stock, hidden). A request takes one immutable
:class:`Snapshot` and uses it to the end, so a reload or a catalogue refresh in between never
mixes two versions and never drops the request: swapping is one attribute assignment, done under
a lock so that concurrent reloads and refreshes do not race each other.

Catalogue changes (``PUT /v1/items/{id}``) live in the store with a revision counter; a request
that finds the store's revision different from its snapshot's rebuilds the catalogue (one read of
the overrides, only when they changed), so every process sees a change on its next request.

Model versions, across processes: the store's ``meta:active`` is the version the fleet serves.
Start and ``POST /v1/admin/reload`` load the newest version on disk and make it active (then drop
the store namespaces of versions older than the previous one); every page view reads
``meta:active`` in its one round trip, and a process that finds it different from its own
version switches to it in a background thread when that bundle is on its disk (requests go on
with the version they started with). So a reload sent to one worker reaches every worker on
their next requests, and a switch back to an older version does too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio.to_thread

from recsys.bundle import ModelBundle, latest_version_dir, read_bundle
from recsys.errors import (
    FeaturesMissingError,
    InternalError,
    ModelUnavailableError,
    RecsysError,
    StoreUnavailableError,
)
from recsys.store import AsyncFeatureReads, CustomerState, FeatureStore, ReadPlan
from serving.circuit import CircuitBreaker, FallbackLog
from serving.email_items import StoreFormat
from serving.model_state import ItemCatalogue, ModelState, Snapshot
from serving.threaded_reader import ThreadedReader

log = logging.getLogger("recsys.serving")

#: A process that could not switch to the store's active version tries again after this long.
FOLLOW_RETRY_AFTER_S = 5.0


Loader = Callable[[ModelBundle], object]  # loads a bundle's features into the store, activates


@dataclass(frozen=True)
class CustomerRead:
    """The outcome of the hot path's store read."""

    snapshot: Snapshot | None
    customer: CustomerState | None
    fallback_reason: str | None  # "model_unavailable", "store_unavailable", "features_missing"
    # (the store lost the served version's features: they are loaded again) or "store_error"
    #: With an answer signature: the live record's revision read, and the stored answer's body
    #: when its tag matched (``customer`` is then None: the records were not decoded).
    live_revision: bytes | None = None
    answer: bytes | None = None


def _ignore_seconds(seconds: float) -> None:
    pass


class ServingState:
    """The current :class:`Snapshot` of this process, the store, reload and following."""

    def __init__(
        self,
        artifacts: Path,
        store: FeatureStore,
        loader: Loader,
        *,
        on_swap: Callable[[str], None] | None = None,
        reader: AsyncFeatureReads | None = None,
        breaker: CircuitBreaker | None = None,
        observe_read: Callable[[float], None] | None = None,
        store_format: StoreFormat | None = None,
    ) -> None:
        self.artifacts = artifacts
        #: how ``loader`` writes the records (None: no precomputed offer items served)
        self._store_format = store_format
        self.store = store
        #: The page views' reads on the event loop: an async client of the same store, or the
        #: sync store in worker threads.
        self.reader: AsyncFeatureReads = reader if reader is not None else ThreadedReader(store)
        self._loader = loader
        self._on_swap = on_swap
        self._snapshot: Snapshot | None = None
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        #: Opens on repeated store failures only (``serving.circuit``); one slow read costs
        #: one fallback answer.
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        #: Gets the seconds of each page-view read (a Prometheus histogram's ``observe``).
        self._observe_read = observe_read if observe_read is not None else _ignore_seconds
        self.fallbacks = FallbackLog()
        self._noticed: tuple[str, str | None] | None = None  # (served, active) last acted on
        self._notice_until = 0.0

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def load_latest(self) -> tuple[str | None, Snapshot]:
        """Load the newest version under ``artifacts`` and make it the store's active one.

        Its features are loaded into the store when missing. Returns the previous version and
        the new snapshot; raises ``ModelUnavailableError`` when there is no readable version.
        When the store is down, the first load still serves the model (per-customer answers
        fall back; :meth:`ready` loads the features once the store is back) and re-raises; a
        reload keeps the old version and re-raises. After this process switched the active
        version, the namespaces of versions older than the previous one are dropped.
        """
        with self._reload_lock:
            previous = self._snapshot
            version_dir = latest_version_dir(self.artifacts)
            if previous is not None and previous.version == version_dir.name:
                snapshot = self._ensure_features(None, previous)
                if self._activate(snapshot.version):
                    self._prune(snapshot.version)
                return previous.version, snapshot
            bundle = read_bundle(version_dir)
            snapshot = self._prepare(version_dir, bundle)
            try:
                active_before = self.store.active_version()
                snapshot = self._ensure_features(bundle, snapshot)
            except StoreUnavailableError:
                if previous is None:
                    self._swap(snapshot)
                raise
            finally:
                del bundle
            self._swap(snapshot)
            if active_before != snapshot.version:
                self._prune(snapshot.version)
            return (previous.version if previous else None), snapshot

    def _prepare(self, version_dir: Path, bundle: ModelBundle | None = None) -> Snapshot:
        """The snapshot of the bundle in ``version_dir``, its catalogue not yet synced."""
        model = ModelState.from_bundle(
            bundle if bundle is not None else read_bundle(version_dir),
            store_format=self._store_format,
        )
        return Snapshot(model, ItemCatalogue.build(model, {}, revision=-1))

    def _swap(self, snapshot: Snapshot) -> None:
        with self._swap_lock:
            self._snapshot = snapshot
        log.info("serving model version %s", snapshot.version)
        if self._on_swap is not None:
            self._on_swap(snapshot.version)

    def _ensure_features(self, bundle: ModelBundle | None, snapshot: Snapshot) -> Snapshot:
        """Load ``snapshot``'s features into the store if missing; its catalogue, synced."""
        if bundle is None and not self.store.has_version(snapshot.version):
            bundle = read_bundle(self.artifacts / snapshot.version)
        if bundle is not None:
            self._loader(bundle)
        return self.sync_catalog(snapshot, self.store.item_revision())

    def _activate(self, version: str) -> bool:
        """Make ``version`` the store's active one; True when that changed it."""
        if self.store.active_version() == version:
            return False
        self.store.activate(version)
        log.info("model version %s is now the active one in the store", version)
        return True

    def _prune(self, served: str) -> None:
        """Drop the store namespaces of versions (on disk) older than the previous active one.

        The active version and the one before it stay, so a process that has not switched yet
        keeps its features. Failures are logged: the switch itself has succeeded.
        """
        try:
            previous = self.store.previous_version()
            if previous is None:
                return
            active = self.store.active_version()
            for version_dir in sorted(self.artifacts.iterdir()):
                version = version_dir.name
                if version >= previous or version in (served, active):
                    continue
                if (version_dir / "manifest.json").is_file() and self.store.has_version(version):
                    removed = self.store.delete_version(version)
                    log.info("dropped model version %s from the store (%d keys)", version, removed)
        except (RecsysError, OSError):
            log.exception("dropping old model versions from the store failed")

    def ready(self) -> tuple[bool, str]:
        """Readiness: a model is loaded, the store answers and holds this version's features.

        Features missing from a reachable store (it restarted empty, or was down at start) are
        loaded again in a background thread; readiness stays false until that is done.
        """
        snapshot = self._snapshot
        if snapshot is None:
            return False, "no model version is loaded"
        if not self.store.ping():
            return False, "the feature store does not answer"
        try:
            if self.store.has_version(snapshot.version):
                return True, "ok"
        except StoreUnavailableError as exc:
            return False, f"the feature store is unavailable: {exc}"
        if not self._reload_lock.locked():
            threading.Thread(
                target=self._reload_features, args=(snapshot,), name="feature-load", daemon=True
            ).start()
        return False, f"features of model version {snapshot.version} are being loaded"

    def _reload_features(self, snapshot: Snapshot) -> None:
        if not self._reload_lock.acquire(blocking=False):
            return  # a reload or another load is already at work
        try:
            self._ensure_features(None, snapshot)
            log.info("features of model version %s loaded into the store", snapshot.version)
        except Exception:
            log.exception("loading the features of model version %s failed", snapshot.version)
        finally:
            self._reload_lock.release()

    # -- following the store's active version ------------------------------------------------

    def _notice_active(self, served: str, active: str | None) -> None:
        """The hot path saw ``active`` != ``served``: act on it once, in the background."""
        now = time.monotonic()
        if (served, active) == self._noticed and now < self._notice_until:
            return
        if self._reload_lock.locked():
            return  # a reload is at work; look again on a later request
        self._noticed, self._notice_until = (served, active), now + FOLLOW_RETRY_AFTER_S
        threading.Thread(
            target=self.follow_active, args=(active,), name="model-follow", daemon=True
        ).start()

    def follow_active(self, active: str | None) -> str | None:
        """Serve the store's ``active`` version when it differs from ours; the version served.

        * another version is active, its bundle is on our disk and its features are loaded:
          switch to it (loading and activating nothing: that was done by the process that
          activated it), whether it is newer than ours or older (a rollback);
        * otherwise, when our version's features are not in the store (it was down at our
          start, or restarted empty): load them, which makes ours the active version;
        * no active version at all, our features there: make ours the active one;
        * an active version we cannot serve (not on our disk, say): keep ours, and warn.
        """
        if not self._reload_lock.acquire(blocking=False):
            return None
        try:
            snapshot = self._snapshot
            if snapshot is None or snapshot.version == active:
                return active
            version_dir = self.artifacts / active if active is not None else None
            if (
                version_dir is not None
                and (version_dir / "manifest.json").is_file()
                and self.store.has_version(version_dir.name)
            ):
                revision = self.store.item_revision()
                followed = self.sync_catalog(self._prepare(version_dir), revision)
                self._swap(followed)
                return followed.version
            if not self.store.has_version(snapshot.version):
                self._ensure_features(None, snapshot)
                return snapshot.version
            if active is None:
                self._activate(snapshot.version)
            else:
                log.warning(
                    "model version %s is active, but its bundle is not under %s or its features "
                    "are not loaded; serving %s",
                    active,
                    self.artifacts,
                    snapshot.version,
                )
            return snapshot.version
        except Exception:
            log.exception("switching to the active model version %s failed", active)
            return None
        finally:
            self._reload_lock.release()

    # -- catalogue and the hot path ----------------------------------------------------------

    def sync_catalog(self, snapshot: Snapshot, revision: int) -> Snapshot:
        """``snapshot`` with the catalogue at ``revision`` (rebuilt only when it changed)."""
        if snapshot.catalog.revision == revision:
            return snapshot
        with self._swap_lock:
            current = self._snapshot
            if current is not None and current.model is snapshot.model:
                if current.catalog.revision == revision:
                    return current
                snapshot = current
            catalog = ItemCatalogue.build(snapshot.model, self.store.item_overrides(), revision)
            refreshed = replace(snapshot, catalog=catalog)
            if current is not None and current.model is snapshot.model:
                self._snapshot = refreshed
            return refreshed

    def read_customer(self, customer_id: str) -> CustomerRead:
        """A customer's whole state (features and contacts included: offers, next best action),
        the catalogue revision and the store's active version, in one round trip (blocking: for
        sync routes)."""
        snapshot = self._snapshot
        if snapshot is None or not self.breaker.allow():
            return self._skipped_read(snapshot)
        try:
            read = self.store.read(ReadPlan.of(snapshot.version, [customer_id], meta=True))
            customer, revision, active = read.states[0], read.revision, read.active
            snapshot = self.sync_catalog(snapshot, revision)
        except (StoreUnavailableError, InternalError) as exc:
            return self._failed_read(snapshot, exc)
        return self._done_read(snapshot, customer, active)

    async def read_customer_async(
        self, customer_id: str, answer: bytes | None = None
    ) -> CustomerRead:
        """The page view's read (:meth:`recsys.store.ReadPlan.page_view_of`: only what ranking
        uses, with the catalogue revision and the active version) awaited on the event loop
        through :attr:`reader` (a worker thread only to rebuild the catalogue, when its revision
        changed). ``answer``: the signature of the request's parameters, to read the stored
        answer in the same round trip (``feature_store.answers``)."""
        snapshot = self._snapshot
        if snapshot is None or not self.breaker.allow():
            return self._skipped_read(snapshot)
        started = time.perf_counter()
        plan = ReadPlan.page_view_of(snapshot.version, customer_id, answer)
        try:
            read = await self.reader.read(plan)
            self._observe_read(time.perf_counter() - started)
            revision, active = read.revision, read.active
            snapshot = await self._synced(snapshot, revision)
        except (StoreUnavailableError, InternalError) as exc:
            self._observe_read(time.perf_counter() - started)
            return self._failed_read(snapshot, exc)
        if read.answer is not None:
            self.breaker.succeeded()
            if active != snapshot.version:
                self._notice_active(snapshot.version, active)
            return CustomerRead(snapshot, None, None, read.live_revision, read.answer)
        done = self._done_read(snapshot, read.states[0], active)
        return replace(done, live_revision=read.live_revision) if answer is not None else done

    def _skipped_read(self, snapshot: Snapshot | None) -> CustomerRead:
        if snapshot is None:
            self.fallbacks.record("model_unavailable", "no model version is loaded")
            return CustomerRead(None, None, "model_unavailable")
        self.fallbacks.record("store_unavailable", "the circuit is open")
        return CustomerRead(snapshot, None, "store_unavailable")

    def _failed_read(self, snapshot: Snapshot, error: RecsysError) -> CustomerRead:
        if isinstance(error, FeaturesMissingError):  # Redis came back empty: load them again
            self._notice_active(snapshot.version, error.active)
            self.fallbacks.record("features_missing", "the store lost the version's features")
            return CustomerRead(snapshot, None, "features_missing")
        self.breaker.failed()
        if isinstance(error, StoreUnavailableError):
            self.fallbacks.record("store_unavailable", str(error))
            return CustomerRead(snapshot, None, "store_unavailable")
        # a bug on our side (InternalError): logged, but the page still gets an answer
        log.exception("reading a customer's state failed; answering the fallback")
        self.fallbacks.record("store_error", type(error).__name__)
        return CustomerRead(snapshot, None, "store_error")

    def _done_read(
        self, snapshot: Snapshot, customer: CustomerState, active: str | None
    ) -> CustomerRead:
        self.breaker.succeeded()
        if active != snapshot.version:
            self._notice_active(snapshot.version, active)
        return CustomerRead(snapshot, customer, None)

    async def _synced(self, snapshot: Snapshot, revision: int) -> Snapshot:
        """:meth:`sync_catalog` off the event loop; nothing to do when the revision is the
        snapshot's (the common case)."""
        if snapshot.catalog.revision == revision:
            return snapshot
        return await anyio.to_thread.run_sync(self.sync_catalog, snapshot, revision)

    def read_customers(
        self,
        customer_ids: Sequence[str],
        snapshot: Snapshot | None = None,
        store: FeatureStore | None = None,
    ) -> tuple[Snapshot, list[CustomerState]]:
        """Many customers' states with the catalogue revision and the active version, in one
        round trip (the offers batch and export); ``snapshot``: the one to stay on (an
        export), else the current one; ``store``: the same store on a client with a longer
        timeout, else :attr:`store`. No fallback: ``StoreUnavailableError`` and
        ``ModelUnavailableError`` reach the caller (offers must not ignore the contacts)."""
        snapshot = snapshot or self._snapshot
        if snapshot is None:
            raise ModelUnavailableError("no model version is loaded")
        reads = store if store is not None else self.store
        read = reads.read(ReadPlan.of(snapshot.version, customer_ids, meta=True))
        states, revision, active = read.states, read.revision, read.active
        if active != snapshot.version and snapshot is self._snapshot:
            self._notice_active(snapshot.version, active)
        return self.sync_catalog(snapshot, revision), states

    def current(self) -> Snapshot | None:
        """The snapshot with an up-to-date catalogue, or the cached one if the store is down."""
        snapshot = self._snapshot
        if snapshot is None or not self.breaker.allow():
            return snapshot
        try:
            synced = self.sync_catalog(snapshot, self.store.item_revision())
        except StoreUnavailableError:
            self.breaker.failed()
            return snapshot
        self.breaker.succeeded()
        return synced

    async def current_async(self) -> Snapshot | None:
        """:meth:`current` awaited on the event loop through :attr:`reader`."""
        snapshot = self._snapshot
        if snapshot is None or not self.breaker.allow():
            return snapshot
        try:
            synced = await self._synced(snapshot, await self.reader.item_revision())
        except StoreUnavailableError:
            self.breaker.failed()
            return snapshot
        self.breaker.succeeded()
        return synced
