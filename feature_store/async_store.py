"""The hot path's reads on ``redis.asyncio``: :class:`AsyncFeatureReader`.

The same reads as :class:`~feature_store.redis_store.RedisFeatureStore`, awaited on the event
loop instead of blocking a worker thread, so an ``async def`` route reads a customer with no
thread-pool hop. The keys and the decoding are not repeated here: both readers build the
pipeline of a :class:`~recsys.store.ReadPlan` with :func:`~feature_store.reads.queue_read`
and decode it with :func:`~feature_store.reads.decode_read`; only the I/O (``execute``
awaited or not) differs.

:func:`connect_async` takes the URLs of :func:`feature_store.connection.connect` (one server,
TLS, Unix socket, Redis Cluster) and gives the client the same bounded timeouts and the same
retry (a broken connection once, at once; never a timeout), and
:func:`~feature_store.connection.store_errors` translates its exceptions the same way (it works
around an ``await``). Replies are parsed, and commands packed (one server), by hiredis.

Writes, bulk loads, privacy and administration stay on the sync store: they are not the page
view's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeAlias

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.utils import HIREDIS_AVAILABLE

from feature_store import answers, keys
from feature_store.connection import (
    _plain_url,
    _redacted,
    client_options,
    is_cluster_url,
    store_errors,
)
from feature_store.reads import READ_OPERATION, decode_read, queue_read
from recsys.config import Settings
from recsys.errors import InvalidRequestError
from recsys.store import ReadPlan, ReadResult

AsyncRedisClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"


class _HiredisPacking:
    """Commands packed by hiredis (C), as redis-py's sync connections pack them when it is
    installed; redis.asyncio packs them in Python, about a tenth of a page view's read."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)  # type: ignore[no-any-return]


def _hiredis_packing(connection_class: type) -> type:
    if not HIREDIS_AVAILABLE or issubclass(connection_class, _HiredisPacking):
        return connection_class
    return type(connection_class.__name__, (_HiredisPacking, connection_class), {})


def connect_async(
    url: str, *, timeout_ms: float, max_connections: int | None = None
) -> AsyncRedisClient:
    """An asyncio client for ``url`` (the URLs of :func:`feature_store.connection.connect`);
    connects lazily, on first use, on the running event loop: make it inside the loop that
    uses it (an app's lifespan) and close it there with ``await client.aclose()``."""
    options = client_options(timeout_ms=timeout_ms, max_connections=max_connections)
    plain = _plain_url(url)
    try:
        if is_cluster_url(url):
            return redis.asyncio.cluster.RedisCluster.from_url(
                plain, retry=Retry(NoBackoff(), 1), **options
            )
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        client = redis.asyncio.Redis.from_url(plain, retry=retry, **options)
        pool = client.connection_pool
        pool.connection_class = _hiredis_packing(pool.connection_class)  # before any connection
        return client
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"bad Redis URL {_redacted(url)!r}: {exc}") from exc


class AsyncFeatureReader:
    """Customers' states from Redis on the event loop, one pipelined round trip per read.

    ``client`` returns bytes (``decode_responses=False``); build it with
    :func:`connect_async` to get bounded timeouts. Errors are those of ``recsys.errors``
    (:class:`~recsys.errors.StoreUnavailableError` when Redis cannot answer in time).
    """

    def __init__(self, client: AsyncRedisClient, prefix: str, *, contacts_read: int = 50) -> None:
        self.client = client
        self.prefix = prefix
        self.contacts_read = contacts_read
        self._writes: set[asyncio.Task[Any]] = set()  # write-backs in flight (kept referenced)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, url: str | None = None, timeout_ms: float | None = None
    ) -> AsyncFeatureReader:
        """A reader on ``url`` (default ``settings.redis_url``) with the serving timeout
        (``settings.serving.redis_timeout_ms``)."""
        url = url or settings.redis_url
        if not url:
            raise InvalidRequestError("no Redis URL: set RECSYS_REDIS_URL or start embedded Redis")
        timeout = timeout_ms if timeout_ms is not None else settings.serving.redis_timeout_ms
        return cls(connect_async(url, timeout_ms=timeout), settings.redis_prefix)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def read(self, plan: ReadPlan) -> ReadResult:
        """The plan's keys in one pipelined round trip (the same commands as the sync store's)."""
        if not plan.customer_ids and not plan.meta:
            return ReadResult([])
        pipe = queue_read(self.client, self.prefix, plan, contacts_read=self.contacts_read)
        with store_errors(READ_OPERATION):
            replies = await pipe.execute()
        return decode_read(plan, replies)

    def store_answer(self, command: tuple[Any, ...], done: Callable[[str], None]) -> None:
        """The answer's write-back in a task of its own, not awaited by the page view (a
        connection of the pool: redis.asyncio does not pipeline across requests); ``done``
        gets the outcome."""
        task = asyncio.get_running_loop().create_task(self.client.execute_command(*command))
        self._writes.add(task)

        def finished(task: asyncio.Task[Any]) -> None:
            self._writes.discard(task)
            if task.cancelled() or task.exception() is not None:
                done(answers.FAILED)
            else:
                done(answers.outcome(task.result()))

        task.add_done_callback(finished)

    async def item_revision(self) -> int:
        """The catalogue revision (see ``RedisFeatureStore.set_item_override``)."""
        with store_errors("item_revision"):
            return int(await self.client.get(keys.item_revision(self.prefix)) or 0)

    async def ping(self) -> bool:
        """True when Redis answers within the timeout; never raises."""
        try:
            with store_errors("ping"):
                return bool(await self.client.ping())
        except Exception:
            return False
