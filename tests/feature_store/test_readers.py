"""The customer reads, one behaviour suite run on both readers against a real Redis.

:class:`ReaderBehaviour` holds what every reader must do (exact round trips of the records, one
pipelined round trip per read, the same errors, bounded timeouts); each ``Test...`` subclass says
how to make its reader: :class:`~feature_store.redis_store.RedisFeatureStore` (sync, batch and
admin paths) and :class:`~feature_store.async_store.AsyncFeatureReader` (the page view's path on
the event loop). The async reader runs behind a small sync face, on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from storekit import assert_same_batch, one_node_cluster, records, spawn_redis

from feature_store import answers, codec, keys
from feature_store.async_store import AsyncFeatureReader, connect_async
from feature_store.connection import connect
from feature_store.embedded import EmbeddedRedis, free_port
from feature_store.redis_store import RedisFeatureStore
from recsys.config import ServingConfig, Settings
from recsys.decisions.contacts import Contact
from recsys.errors import InternalError, InvalidRequestError, StoreUnavailableError
from recsys.store import BatchRecord, CustomerState, LiveRecord, ReadPlan, ReadResult

T = TypeVar("T")


def load(url: str, prefix: str, data: list[tuple[str, BatchRecord]]) -> None:
    """Load ``data`` as version ``v1`` with a store of its own (closed afterwards)."""
    store = RedisFeatureStore(connect(url, timeout_ms=2000), prefix)
    try:
        store.load_version("v1", data)
    finally:
        store.close()


class Reader(Protocol):
    """What the suite calls: the contract's reads (the async reader through a sync face)."""

    def read(self, plan: ReadPlan) -> ReadResult: ...
    def item_revision(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


def one(reader: Reader, version: str, customer_id: str) -> CustomerState:
    return reader.read(ReadPlan.of(version, [customer_id])).states[0]


def many(reader: Reader, version: str, customer_ids: Sequence[str]) -> list[CustomerState]:
    return reader.read(ReadPlan.of(version, customer_ids)).states


def one_with_meta(
    reader: Reader, version: str, customer_id: str
) -> tuple[CustomerState, int, str | None]:
    read = reader.read(ReadPlan.of(version, [customer_id], meta=True))
    return read.states[0], read.revision, read.active


def many_with_meta(
    reader: Reader, version: str, customer_ids: Sequence[str]
) -> tuple[list[CustomerState], int, str | None]:
    read = reader.read(ReadPlan.of(version, customer_ids, meta=True))
    return read.states, read.revision, read.active


class CountingConnection(redis.Connection):
    """Counts the writes to the socket: one per command, one per pipeline."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


class CountingAsyncConnection(redis.asyncio.Connection):
    """The same count for redis.asyncio (it shares the counter)."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


class AsyncReaderFace:
    """An :class:`AsyncFeatureReader` called synchronously: each read runs to completion on
    this object's own event loop, the loop its connections belong to."""

    def __init__(self, make: Any) -> None:
        self._runner = asyncio.Runner()
        self.reader: AsyncFeatureReader = self._run(self._make(make))

    @staticmethod
    async def _make(make: Any) -> AsyncFeatureReader:
        reader: AsyncFeatureReader = make()  # built inside the loop, as a lifespan does
        return reader

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self._runner.run(awaitable)  # type: ignore[arg-type]

    def read(self, plan: ReadPlan) -> ReadResult:
        return self._run(self.reader.read(plan))

    def item_revision(self) -> int:
        return self._run(self.reader.item_revision())

    def ping(self) -> bool:
        return self._run(self.reader.ping())

    def close(self) -> None:
        try:
            self._run(self.reader.aclose())
        finally:
            self._runner.close()


class ReaderBehaviour:
    """The behaviour suite; a subclass implements :meth:`make` and :meth:`make_counting`."""

    def make(self, url: str, prefix: str, *, timeout_ms: float = 2000, **options: Any) -> Reader:
        raise NotImplementedError

    def make_counting(self, url: str, prefix: str) -> Reader:
        """A reader whose socket writes are counted in ``CountingConnection.sends``."""
        raise NotImplementedError

    @pytest.fixture
    def writer(self, redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
        store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix, chunk_size=7)
        yield store
        store.close()

    @pytest.fixture
    def reader(self, redis_url: str, redis_prefix: str) -> Iterator[Reader]:
        the_reader = self.make(redis_url, redis_prefix)
        yield the_reader
        the_reader.close()

    # -- what is read ------------------------------------------------------------------------

    def test_a_loaded_record_reads_back_exactly(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        data = records(20)
        assert writer.load_version("v1", data) == 20
        state = one(reader, "v1", "c13")
        assert state.customer_id == "c13" and state.known
        assert_same_batch(state.batch, data[13][1])
        assert state.live == LiveRecord()

    def test_an_unknown_customer_reads_as_unknown(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        writer.load_version("v1", records(3))
        state = one(reader, "v1", "nobody")
        assert state.batch is None and not state.known

    def test_a_record_of_another_version_is_not_read(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        writer.load_version("v1", records(3))
        assert one(reader, "v2", "c1").batch is None

    def test_read_reflects_the_live_record(
        self, writer: RedisFeatureStore, reader: Reader, redis_client: redis.Redis
    ) -> None:
        writer.load_version("v1", records(3))
        live = LiveRecord(
            recent_views=("B", "A"),
            cart=("C",),
            purchased={"D": 2.0},
            disliked=frozenset({"E"}),
            features={"nps": 3},
            user_vector=np.array([1.0, 2.0], dtype=np.float32),
        )
        redis_client.hset(keys.customer_live(writer.prefix, "c2"), mapping=codec.encode_live(live))
        state = one(reader, "v1", "c2")
        assert state.live.recent_views == ("B", "A")
        assert state.live.cart == ("C",)
        assert state.live.purchased == {"D": 2.0}
        assert state.live.disliked == frozenset({"E"})
        assert state.live.features == {"nps": 3}
        assert state.live.user_vector is not None and state.live.user_vector.tolist() == [1.0, 2.0]
        # A customer known only from live activity is known too.
        redis_client.hset(keys.customer_live(writer.prefix, "new"), "views", b'["X"]')
        assert one(reader, "v1", "new").known

    def test_read_customers_answers_every_id_in_order(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        data = dict(records(30))
        writer.load_version("v1", data.items())
        ids = ["c29", "ghost", "c0", "c7", "c29"]
        states = many(reader, "v1", ids)
        assert [s.customer_id for s in states] == ids
        assert states[1].batch is None
        for state in (states[0], states[2], states[3], states[4]):
            assert_same_batch(state.batch, data[state.customer_id])
        assert many(reader, "v1", []) == []

    def test_a_read_with_meta_returns_the_catalogue_revision(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        writer.load_version("v1", records(2))
        assert reader.item_revision() == 0
        writer.set_item_override("85123A", {"hidden": True})
        state, revision, _ = one_with_meta(reader, "v1", "c1")
        assert state.batch is not None and revision == 1
        assert reader.item_revision() == 1

    def test_the_page_view_read_carries_the_revision_and_active_version(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        writer.load_version("v1", records(3))
        assert one_with_meta(reader, "v1", "c1")[1:] == (0, None)
        writer.activate("v1")
        writer.set_item_override("85123A", {"hidden": True})
        state, revision, active = one_with_meta(reader, "v1", "c1")
        assert state.batch is not None and (revision, active) == (1, "v1")

    def test_a_page_view_with_a_signature_reads_its_stored_answer_when_the_tag_matches(
        self, writer: RedisFeatureStore, reader: Reader, redis_client: redis.Redis
    ) -> None:
        writer.load_version("v1", records(3))
        signature, other = b"s" * 16, b"t" * 16
        plan = ReadPlan.page_view_of("v1", "c1", signature)
        missed = reader.read(plan)  # nothing stored: the state, and the live revision
        assert missed.answer is None and missed.live_revision == b"0"
        assert missed.states[0].batch is not None
        answer_key = keys.customer_answer(writer.prefix, "c1")
        redis_client.set(answer_key, answers.tag("v1", 0, b"0", signature) + b"body")
        hit = reader.read(plan)
        assert (hit.answer, hit.states, hit.live_revision) == (b"body", [], b"0")
        assert reader.read(ReadPlan.page_view_of("v1", "c1", other)).answer is None
        assert reader.read(ReadPlan.page_view_of("v1", "c1")).answer is None  # not asked
        redis_client.hincrby(keys.customer_live(writer.prefix, "c1"), keys.LIVE_REVISION, 1)
        after_event = reader.read(plan)
        assert after_event.answer is None and after_event.live_revision == b"1"
        assert after_event.states[0].batch is not None

    def test_the_newest_contacts_are_read_with_the_customer(
        self,
        redis_url: str,
        redis_prefix: str,
        writer: RedisFeatureStore,
        redis_client: redis.Redis,
    ) -> None:
        reader = self.make(redis_url, redis_prefix, contacts_read=2)
        writer.load_version("v1", records(3))
        contacts = keys.customer_contacts(redis_prefix, "c1")
        redis_client.zadd(
            contacts, {"old|email": 1.0, "winback|sms": 86_400.0 * 3, "cart-reminder|app": 86_400.0}
        )
        states = many(reader, "v1", ["c1", "c2"])
        reader.close()
        assert states[0].live.contacts == (
            Contact("cart-reminder", "app", datetime(1970, 1, 2)),
            Contact("winback", "sms", datetime(1970, 1, 4)),
        )
        assert states[0].batch is not None and states[1].batch is not None
        assert states[1].live == LiveRecord()

    def test_the_batch_read_carries_the_revision_and_active_version(
        self, writer: RedisFeatureStore, reader: Reader
    ) -> None:
        writer.load_version("v1", records(3))
        writer.activate("v1")
        writer.set_item_override("85123A", {"hidden": True})
        states, revision, active = many_with_meta(reader, "v1", ["c2", "nobody", "c0"])
        assert [s.customer_id for s in states] == ["c2", "nobody", "c0"]
        assert states[1].batch is None and states[2].batch is not None
        assert (revision, active) == (1, "v1")

    # -- how it is read ----------------------------------------------------------------------

    def test_reads_are_one_round_trip(
        self, redis_url: str, redis_prefix: str, writer: RedisFeatureStore
    ) -> None:
        writer.load_version("v1", records(1000))
        reader = self.make_counting(redis_url, redis_prefix)
        try:
            assert reader.ping()  # the connection handshake is not a read's cost
            CountingConnection.sends = 0
            assert reader.ping() and reader.item_revision() == 0
            assert CountingConnection.sends == 2  # the counter sees every command

            CountingConnection.sends = 0
            assert one(reader, "v1", "c5").batch is not None
            assert CountingConnection.sends == 1

            CountingConnection.sends = 0
            states = many(reader, "v1", [f"c{i}" for i in range(1000)])
            assert all(s.batch is not None for s in states)
            assert CountingConnection.sends == 1

            CountingConnection.sends = 0
            one_with_meta(reader, "v1", "c5")
            one_with_meta(reader, "v1", "c5")
            assert CountingConnection.sends == 2

            CountingConnection.sends = 0
            reader.read(ReadPlan.page_view_of("v1", "c5", b"s" * 16))  # with the stored answer
            assert CountingConnection.sends == 1
        finally:
            reader.close()

    def test_an_invalid_customer_id_is_rejected_before_any_call(self, reader: Reader) -> None:
        for bad in ["a}b", "", "x y", "a*"]:
            with pytest.raises(InvalidRequestError, match="invalid customer id"):
                one(reader, "v1", bad)
            with pytest.raises(InvalidRequestError, match="invalid customer id"):
                many_with_meta(reader, "v1", ["c1", bad])

    # -- errors and failure ------------------------------------------------------------------

    def test_redis_errors_that_are_bugs_become_internal_errors(
        self, writer: RedisFeatureStore, reader: Reader, redis_client: redis.Redis
    ) -> None:
        redis_client.set(keys.customer_batch(writer.prefix, "c1", "v1"), "not a hash")
        with pytest.raises(InternalError, match="WRONGTYPE"):
            one(reader, "v1", "c1")
        assert one(reader, "v1", "c2").batch is None  # the connection is still good

    @pytest.fixture
    def own_server(self, tmp_path: Path) -> Iterator[EmbeddedRedis]:
        with EmbeddedRedis(tmp_path, persist=False) as server:
            yield server

    def test_reads_fail_fast_when_the_server_is_stopped(self, own_server: EmbeddedRedis) -> None:
        load(own_server.url, "p", records(3))
        reader = self.make(own_server.url, "p", timeout_ms=100)
        assert one(reader, "v1", "c1").batch is not None
        assert reader.ping()
        own_server.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            one_with_meta(reader, "v1", "c1")
        assert time.monotonic() - started < 0.5
        assert reader.ping() is False
        with pytest.raises(StoreUnavailableError):
            reader.item_revision()
        reader.close()

    def test_reads_time_out_when_the_server_stalls(self, own_server: EmbeddedRedis) -> None:
        timeout_ms = 100
        load(own_server.url, "p", records(3))
        reader = self.make(own_server.url, "p", timeout_ms=timeout_ms)
        assert one(reader, "v1", "c1").batch is not None  # connected
        admin = redis.Redis.from_url(own_server.url)
        admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="[Tt]imeout"):
                one(reader, "v1", "c1")
            elapsed = time.monotonic() - started
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            admin.close()
        assert timeout_ms / 1000 * 0.8 <= elapsed < timeout_ms / 1000 * 4  # one timeout, no retry
        assert one(reader, "v1", "c1").batch is not None  # a fresh connection
        reader.close()

    def test_a_pooled_connection_survives_a_server_restart(self, tmp_path: Path) -> None:
        port = free_port()
        with EmbeddedRedis(tmp_path, port=port, persist=True) as server:
            load(server.url, "p", records(3))
            reader = self.make(server.url, "p", timeout_ms=500)
            assert one(reader, "v1", "c1").batch is not None
        with EmbeddedRedis(tmp_path, port=port, persist=True):
            assert one(reader, "v1", "c1").batch is not None  # one retry, fresh conn
        reader.close()

    # -- URLs --------------------------------------------------------------------------------

    def test_a_unix_socket_url_reads(self, tmp_path: Path) -> None:
        socket_path = tmp_path / "r.sock"
        process, _ = spawn_redis(
            tmp_path, "--unixsocket", str(socket_path), "--unixsocketperm", "700"
        )
        try:
            url = f"unix://{socket_path}?db=0"
            data = records(5)
            load(url, "p", data)
            reader = self.make(url, "p")
            assert_same_batch(one(reader, "v1", "c4").batch, data[4][1])
            reader.close()
        finally:
            process.terminate()
            process.wait(10)

    def test_a_cluster_url_reads_in_one_pipeline_across_slots(self, tmp_path: Path) -> None:
        with one_node_cluster(tmp_path) as port:
            url = f"redis+cluster://127.0.0.1:{port}"
            writer = RedisFeatureStore(connect(url, timeout_ms=1000), "p", chunk_size=10)
            data = records(25)
            writer.load_version("v1", data)
            writer.activate("v1")
            writer.set_item_override("X", {"hidden": True})
            writer.close()
            reader = self.make(url, "p")
            state, revision, active = one_with_meta(reader, "v1", "c4")
            assert_same_batch(state.batch, data[4][1])
            assert (revision, active) == (1, "v1")
            states, _, _ = many_with_meta(reader, "v1", [f"c{i}" for i in range(25)])
            assert [s.batch is not None for s in states] == [True] * 25
            reader.close()


class TestRedisFeatureStoreReads(ReaderBehaviour):
    def make(self, url: str, prefix: str, *, timeout_ms: float = 2000, **options: Any) -> Reader:
        return RedisFeatureStore(connect(url, timeout_ms=timeout_ms), prefix, **options)

    def make_counting(self, url: str, prefix: str) -> Reader:
        pool = redis.ConnectionPool.from_url(
            url, connection_class=CountingConnection, socket_timeout=2
        )
        return RedisFeatureStore(redis.Redis(connection_pool=pool), prefix)


class TestAsyncFeatureReaderReads(ReaderBehaviour):
    def make(self, url: str, prefix: str, *, timeout_ms: float = 2000, **options: Any) -> Reader:
        return AsyncReaderFace(
            lambda: AsyncFeatureReader(connect_async(url, timeout_ms=timeout_ms), prefix, **options)
        )

    def make_counting(self, url: str, prefix: str) -> Reader:
        def make() -> AsyncFeatureReader:
            pool = redis.asyncio.ConnectionPool.from_url(
                url, connection_class=CountingAsyncConnection, socket_timeout=2
            )
            return AsyncFeatureReader(redis.asyncio.Redis(connection_pool=pool), prefix)

        return AsyncReaderFace(make)


# -- the async client itself -----------------------------------------------------------------


def test_async_clients_have_bounded_timeouts_and_no_timeout_retries(redis_url: str) -> None:
    client = connect_async(redis_url, timeout_ms=42)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == pytest.approx(0.042)
    assert kwargs["socket_connect_timeout"] == pytest.approx(0.042)
    retry = kwargs["retry"]
    assert retry.get_retries() == 1
    assert redis.exceptions.TimeoutError not in retry._supported_errors
    assert isinstance(connect_async("redis+cluster://127.0.0.1:7000", timeout_ms=42),
                      redis.asyncio.cluster.RedisCluster)  # fmt: skip
    asyncio.run(client.aclose())


@pytest.mark.parametrize("connect_to", [connect, connect_async], ids=["sync", "async"])
def test_bad_urls_and_timeouts_are_invalid_requests(connect_to: Any) -> None:
    with pytest.raises(InvalidRequestError, match="bad Redis URL"):
        connect_to("http://localhost", timeout_ms=50)
    with pytest.raises(InvalidRequestError, match="positive"):
        connect_to("redis://localhost", timeout_ms=0)


def test_the_async_reader_from_settings_uses_the_serving_timeout(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, serving=ServingConfig(redis_timeout_ms=25))
    face = AsyncReaderFace(lambda: AsyncFeatureReader.from_settings(settings))
    kwargs = face.reader.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == pytest.approx(0.025)
    assert face.reader.prefix == settings.redis_prefix
    assert face.ping()
    face.close()
    with pytest.raises(InvalidRequestError, match="no Redis URL"):
        AsyncFeatureReader.from_settings(Settings(redis_url=None))
