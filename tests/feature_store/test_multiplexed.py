"""The page view's reader (``feature_store.multiplexed``): the readers' behaviour suite, and
what is its own: one connection for concurrent reads, and a timeout that measures Redis, not
the event loop's lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from storekit import records
from test_readers import AsyncReaderFace, CountingConnection, Reader, ReaderBehaviour, load

from feature_store.embedded import EmbeddedRedis
from feature_store.multiplexed import Command, MultiplexedConnection, MultiplexedReader
from recsys.errors import InvalidRequestError, StoreUnavailableError
from recsys.store import ReadPlan


class CountingMultiplexedConnection(MultiplexedConnection):
    """Counts the writes: each ``execute`` is one write of all its commands."""

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        CountingConnection.sends += len(commands) if commands[0][0] == "PING" else 1
        return await super().execute(commands)


class TestMultiplexedReaderReads(ReaderBehaviour):
    def make(self, url: str, prefix: str, *, timeout_ms: float = 2000, **options: Any) -> Reader:
        return AsyncReaderFace(
            lambda: MultiplexedReader(url, prefix, timeout_ms=timeout_ms, **options)
        )

    def make_counting(self, url: str, prefix: str) -> Reader:
        def make() -> MultiplexedReader:
            reader = MultiplexedReader(url, prefix, timeout_ms=2000)
            connection = reader.connection
            reader.connection = CountingMultiplexedConnection(
                connection.address, timeout_s=connection.timeout_s
            )
            return reader

        return AsyncReaderFace(make)

    def test_a_cluster_url_reads_in_one_pipeline_across_slots(self, tmp_path: Path) -> None:
        """Not this reader's: a cluster URL is refused (the app then uses redis.asyncio)."""
        url = "redis+cluster://127.0.0.1:7000"
        assert not MultiplexedReader.supports(url)
        with pytest.raises(InvalidRequestError):
            MultiplexedReader(url, "p", timeout_ms=100)


def test_concurrent_reads_share_one_connection_and_get_their_own_replies(
    redis_url: str, redis_prefix: str
) -> None:
    load(redis_url, redis_prefix, records(50))

    async def main() -> None:
        reader = MultiplexedReader(redis_url, redis_prefix, timeout_ms=2000)
        ids = [f"c{i}" for i in range(50)]
        reads = await asyncio.gather(*(reader.read(ReadPlan.of("v1", [c])) for c in ids))
        assert [read.states[0].customer_id for read in reads] == ids
        assert all(read.states[0].batch is not None for read in reads)
        protocol = reader.connection._protocol
        assert protocol is not None and not protocol.waiting  # every reply handed out
        await reader.aclose()

    asyncio.run(main())


def test_a_reply_that_came_while_the_loop_was_busy_is_no_timeout(tmp_path: Path) -> None:
    """A worker busy past the read's timeout (other requests' scoring) finds Redis's reply
    waiting: the read succeeds. A Redis that really does not answer still times out."""
    with EmbeddedRedis(tmp_path, persist=False) as server:
        load(server.url, "p", records(3))

        async def busy_read(reader: MultiplexedReader, busy_s: float) -> Any:
            read = asyncio.ensure_future(reader.read(ReadPlan.of("v1", ["c1"])))
            await asyncio.sleep(0)  # the request is written, its timer armed
            time.sleep(busy_s)  # the loop blocked by other work; Redis answers meanwhile
            return await read

        async def main() -> None:
            reader = MultiplexedReader(server.url, "p", timeout_ms=50)
            assert await reader.ping()  # connected
            for _ in range(3):
                read = await busy_read(reader, 0.2)
                assert read.states[0].batch is not None
            paused = await reader.connection.execute([("CLIENT", "PAUSE", 400, "ALL")])
            assert paused == [b"OK"]
            with pytest.raises(StoreUnavailableError, match="no answer within 50 ms"):
                await reader.read(ReadPlan.of("v1", ["c1"]))
            await reader.aclose()

        asyncio.run(main())
