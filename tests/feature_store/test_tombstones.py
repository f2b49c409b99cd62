"""The erased set holds keyed digests: no id in it, one key per store, older stores migrated."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from test_privacy import plan, record, views

from feature_store import keys
from feature_store.connection import connect
from feature_store.export import erased_customer_ids
from feature_store.ingest import AsyncEventWriter, EventWriter, IngestResult
from feature_store.redis_store import RedisFeatureStore
from feature_store.tombstones import ErasedSet, Tombstones, embedded_key, key_file
from recsys.config import Settings
from recsys.errors import StoreUnavailableError


def members(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.smembers(keys.erased_customers(prefix)))  # type: ignore[arg-type]


@pytest.fixture
def opened(redis_url: str, redis_prefix: str) -> Iterator[list[RedisFeatureStore]]:
    """Stores opened by a test (closed after it)."""
    stores: list[RedisFeatureStore] = []
    yield stores
    for store in stores:
        store.close()


def open_store(
    opened: list[RedisFeatureStore], url: str, prefix: str, key: str | None = None
) -> RedisFeatureStore:
    store = RedisFeatureStore(connect(url, timeout_ms=2000), prefix, chunk_size=3, erasure_key=key)
    opened.append(store)
    return store


def test_a_digest_depends_on_the_key_and_never_holds_the_id() -> None:
    one, other = Tombstones("k" * 64), Tombstones("l" * 64)
    assert one.of("15222") == one.of("15222") != other.of("15222")
    assert one.of("15222") != one.of("15223")
    digest = one.of("15222")
    assert digest.startswith("#") and len(digest) == 33 and "15222" not in digest
    erased = ErasedSet(one, [digest])
    assert "15222" in erased and "15223" not in erased and 15222 not in erased
    assert len(erased) == 1 and list(erased.among(["1", "15222"])) == ["15222"]


def test_a_configured_key_writes_its_digests_and_another_key_is_refused(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis, opened: list[RedisFeatureStore]
) -> None:
    key = "a-configured-secret-" + "x" * 40
    store = open_store(opened, redis_url, redis_prefix, key)
    store.load_version("v1", [("15222", record(1)), ("15223", record(2))])
    store.erase_customer("15222")

    assert members(redis_client, redis_prefix) == {Tombstones(key).of("15222").encode()}
    assert redis_client.get(keys.erasure_key(redis_prefix)) is None  # the key is not in Redis
    again = open_store(opened, redis_url, redis_prefix, key)  # another process, the same key
    assert again.is_erased("15222") and not again.is_erased("15223")
    with pytest.raises(StoreUnavailableError, match="RECSYS_PRIVACY__ERASURE_KEY"):
        open_store(opened, redis_url, redis_prefix, "another key").is_erased("15222")
    with pytest.raises(StoreUnavailableError, match="another erasure key"):
        open_store(opened, redis_url, redis_prefix).is_erased("15222")  # none: refused too
    with pytest.raises(StoreUnavailableError):  # a writer without the key would let them in
        EventWriter(redis_client, redis_prefix, stream_maxlen=0).ingest(
            views("15222", "late"), None, plan
        )


def test_without_a_configured_key_the_store_keeps_one_that_every_process_shares(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis, opened: list[RedisFeatureStore]
) -> None:
    open_store(opened, redis_url, redis_prefix).erase_customer("c1")
    kept = redis_client.get(keys.erasure_key(redis_prefix))
    assert kept is not None and len(kept) == 64  # 32 random bytes, hex
    assert members(redis_client, redis_prefix) == {Tombstones(kept).of("c1").encode()}
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    result = writer.ingest([*views("c1", "a"), *views("c2", "b")], None, plan)
    assert result == IngestResult(accepted=1, duplicates=0, ignored=1)
    # the same key given as the setting is accepted (moving it out of Redis)
    assert open_store(opened, redis_url, redis_prefix, kept.decode()).is_erased("c1")


def test_plain_ids_of_an_older_store_are_migrated_and_stay_refused(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    erased = keys.erased_customers(redis_prefix)
    redis_client.sadd(erased, "c1", "c3")  # written by an older version: plain ids
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)

    result = writer.ingest([*views("c1", "a"), *views("c2", "b"), *views("c3", "c")], None, plan)

    assert result == IngestResult(accepted=1, duplicates=0, ignored=2)
    left = members(redis_client, redis_prefix)
    assert len(left) == 2 and all(m.startswith(b"#") for m in left)  # no plain id left
    settings = Settings(redis_url=redis_url, redis_prefix=redis_prefix)
    training_leaves_out = erased_customer_ids(settings)
    assert "c1" in training_leaves_out and "c3" in training_leaves_out
    assert "c2" not in training_leaves_out


def test_an_async_writer_resolves_the_key_itself_and_refuses_the_erased(
    redis_url: str, redis_prefix: str, opened: list[RedisFeatureStore]
) -> None:
    open_store(opened, redis_url, redis_prefix).erase_customer("c1")

    async def run() -> IngestResult:
        writer = AsyncEventWriter(redis.asyncio.Redis.from_url(redis_url), redis_prefix, 0)
        try:
            return await writer.ingest([*views("c1", "a"), *views("c2", "b")], None, plan)
        finally:
            await writer.aclose()

    assert asyncio.run(run()) == IngestResult(accepted=1, duplicates=0, ignored=1)


def test_a_customer_erased_while_a_load_runs_gets_no_batch_record(
    redis_url: str, redis_prefix: str, opened: list[RedisFeatureStore]
) -> None:
    store = open_store(opened, redis_url, redis_prefix)  # chunks of 3
    other = open_store(opened, redis_url, redis_prefix)  # the erasing process

    def records() -> Iterator[tuple[str, object]]:
        for n in range(10):
            yield f"c{n}", record(n)
            if n == 4:  # c4 queued in the chunk being filled, c1 in one already written
                other.erase_customer("c4")
                other.erase_customer("c1")

    assert store.load_version("v1", records()) == 10  # type: ignore[arg-type]
    held = {f"c{n}": store.read_customer("v1", f"c{n}").batch is not None for n in range(10)}
    assert held == {f"c{n}": n not in (1, 4) for n in range(10)}


def test_the_embedded_key_file_is_private_and_takes_over_a_key_kept_in_redis(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    fresh = key_file(tmp_path / "a")
    assert len(fresh) == 64 and key_file(tmp_path / "a") == fresh  # made once
    assert os.stat(tmp_path / "a" / "erasure.key").st_mode & 0o077 == 0  # owner only

    EventWriter(redis_client, redis_prefix, stream_maxlen=0).ingest(views("c1", "a"), None, plan)
    kept = redis_client.get(keys.erasure_key(redis_prefix))  # no key given: kept in Redis
    assert kept is not None
    assert embedded_key(redis_client, redis_prefix, tmp_path / "b") == kept.decode()
    assert redis_client.get(keys.erasure_key(redis_prefix)) is None  # moved out of Redis
    assert (tmp_path / "b" / "erasure.key").read_text().strip() == kept.decode()
