"""A Redis client from a URL, with bounded timeouts, and the one place Redis errors are mapped.

URLs (``RECSYS_REDIS_URL``):

=========================================  ==================================================
URL                                        client
=========================================  ==================================================
``redis://[user:pass@]host:port/db``       one server (or a proxy), plain TCP
``rediss://...``                           one server over TLS (``ssl_*`` query options pass
                                           through to redis-py)
``unix:///path/to/redis.sock?db=0``        one server over a Unix socket
``redis+cluster://host:port``              Redis Cluster, discovered from this seed node;
``rediss+cluster://host:port``             the same over TLS
``redis://host:port?cluster=true``         the same as ``redis+cluster://`` (query form)
=========================================  ==================================================

Every client has a socket timeout and a connect timeout of ``timeout_ms`` (for serving,
``settings.serving.redis_timeout_ms``), so a call to a dead or stalled server fails after about
that long instead of hanging. A broken connection (reset, closed by the server) is retried once,
at once, on a fresh connection, which is what a pooled connection needs after a Redis restart; a
timeout is never retried, so the hot path never waits more than its budget twice over.

:func:`store_errors` translates ``redis.exceptions`` into :mod:`recsys.errors`, as httpx's
``map_httpcore_exceptions`` does for its transport: nothing outside ``feature_store`` sees a
Redis exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.errors import InternalError, InvalidRequestError, StoreUnavailableError

RedisClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_TRUE = {"1", "true", "yes", "on"}

# Errors that mean "the store cannot answer now": serving falls back, callers may retry later.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # refused, reset, auth, loading, pool exhausted
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,  # and MovedError: a resharding the client could not follow
    redis.exceptions.ReadOnlyError,  # a replica or a failing-over primary
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoPermissionError,
    OSError,  # a socket error redis-py did not wrap
)


def is_cluster_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return True
    return any(k == "cluster" and v.lower() in _TRUE for k, v in parse_qsl(parts.query))


def _plain_url(url: str) -> str:
    """The URL redis-py understands: cluster scheme and ``cluster`` query option removed."""
    parts = urlsplit(url)
    query_pairs = parse_qsl(parts.query)
    if parts.scheme not in CLUSTER_SCHEMES and all(k != "cluster" for k, _ in query_pairs):
        return url
    scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    query = urlencode([(k, v) for k, v in query_pairs if k != "cluster"])
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client_options(*, timeout_ms: float, max_connections: int | None = None) -> dict[str, Any]:
    """The keyword options of every client, sync (:func:`connect`) or asyncio
    (:func:`feature_store.async_store.connect_async`): both timeouts of ``timeout_ms``, bytes
    replies, no health checks and, when given, the pool's ``max_connections``."""
    if timeout_ms <= 0:
        raise InvalidRequestError(f"Redis timeout must be positive, got {timeout_ms} ms")
    timeout_s = timeout_ms / 1000.0
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": False,
        "health_check_interval": 0,
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    return options


def connect(url: str, *, timeout_ms: float, max_connections: int | None = None) -> RedisClient:
    """A client for ``url`` (see the module docstring); connects lazily, on first use.

    Responses stay bytes (``decode_responses=False``): the codec needs the raw vector bytes.
    """
    options = client_options(timeout_ms=timeout_ms, max_connections=max_connections)
    plain = _plain_url(url)
    try:
        if is_cluster_url(url):
            return redis.cluster.RedisCluster.from_url(
                plain, retry=Retry(NoBackoff(), 1), **options
            )
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        return redis.Redis.from_url(plain, retry=retry, **options)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"bad Redis URL {_redacted(url)!r}: {exc}") from exc
    except _UNAVAILABLE as exc:  # RedisCluster discovers the nodes at construction
        raise StoreUnavailableError(
            f"Redis Cluster at {_redacted(url)!r} unavailable: {exc}"
        ) from exc


@contextlib.contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Translate Redis exceptions raised inside the block; ``operation`` names what failed.

    Unavailability (connection, timeout, cluster, read-only, out of memory) becomes
    :class:`StoreUnavailableError`, whose message names the operation only (the redis-py
    error, which may carry the server's address, is its ``__cause__``); any other Redis error
    (a wrong type, a bad command) is a bug on our side and becomes :class:`InternalError`.
    """
    try:
        yield
    except _UNAVAILABLE as exc:
        # the message reaches clients (a 503's detail): no address, no redis-py text; the
        # cause stays chained, and serving.errors logs it
        kind = type(exc).__name__  # the kind only (TimeoutError, ConnectionError, ...)
        raise StoreUnavailableError(f"Redis unavailable during {operation} ({kind})") from exc
    except redis.exceptions.RedisError as exc:
        raise InternalError(f"Redis error during {operation}: {type(exc).__name__}: {exc}") from exc
