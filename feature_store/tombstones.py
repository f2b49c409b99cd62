"""What the erased set holds: a keyed digest of each erased customer's id, never the id.

The erased set (``<p>:erased``, on a cluster one per slot: ``feature_store.shards``) is the
suppression list that keeps an erased customer out: the event script refuses their events, bulk
loads drop their batch records, ``export-events`` and training leave their old events out. It
must answer "is this id erased?", never "which ids were erased?": so its members are
:meth:`Tombstones.of` the id, ``#`` followed by the first 128 bits of HMAC-SHA256(key, id) in hex.
Customer ids are short and guessable (``15222``), so an unkeyed hash would be undone by hashing
every candidate; without the key, a member says nothing about the id. ``#`` is outside the
customer-id alphabet, so a member without it is a plain id written by an older version.

Every reader and writer of the set digests through this module: the erasure, the export of a
customer, the event writer's read and its Lua script (which gets digests as arguments, so the
set stays sharded by the customer's slot on a cluster), bulk loads, the events export and
training's exclusion (:class:`ErasedSet`, a container that digests the id it is asked about).

**The key** (:func:`resolve`, once per process and store):

1. ``RECSYS_PRIVACY__ERASURE_KEY`` (``settings.privacy.erasure_key``) when set: kept outside
   Redis, so neither Redis's memory nor its files (AOF, RDB, replicas, backups) hold it.
2. The embedded server (``pelanggan.store.redis_for``): a random key written once to the file
   ``erasure.key`` (mode 0600) of its data folder, beside (not inside) ``appendonlydir``, and
   passed on as that setting (:func:`embedded_key`; a key the store already kept in Redis is
   moved into the file). The AOF alone then says nothing; a copy of the whole folder holds key
   and digests, so it can test guessed ids (though it lists none).
3. Otherwise (a Redis of your own and no key set): a random key generated once per store and
   kept in Redis (``<p>:{erasure}:key``). Then the AOF holds the key too, and whoever reads the
   files can test candidate ids against the digests: the files no longer contain the id, but do
   not hide *whether* a guessed id was erased. Set the key to close that.

A check value (``<p>:{erasure}:check``, the digest of the empty string, which is no customer id)
records which key wrote the set: a process whose key gives another digest refuses to work
(:class:`~recsys.errors.StoreUnavailableError`) instead of silently letting every erased
customer back in. To move a store from case 3 to case 1, set the key to the value of
``<p>:{erasure}:key`` and delete that key.

**Upgrades**: plain ids left in the set by an older version are migrated when a store resolves
its key (:func:`resolve`, :func:`migrate_plain_ids`: each replaced by its digest in one
``MULTI`` on its own set, so it stays on its slot and no reader sees it missing). The service's
event writer resolves through its store (:class:`Resolver`), so the migration has run before
the first event is checked. A plain id written after that (by a process of the older version
still running) is migrated at the next start only: stop the older version first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from feature_store import keys, shards
from feature_store.connection import RedisClient, store_errors
from recsys.config import Settings
from recsys.errors import InternalError, StoreUnavailableError

KEY_FILE = "erasure.key"  # in the embedded server's data folder
MARK = "#"  # outside the customer-id alphabet: digests start with it, plain ids cannot
DIGEST_BYTES = 16
CACHED = 16_384  # digests remembered per key

# KEYS[1] the key kept in Redis, KEYS[2] the check value. ARGV[1] the configured key's check
# ('' when none is configured), ARGV[2] a fresh key and ARGV[3] its check (for case 3).
# Returns {'ok'} (configured key accepted), {'key', key} (the key kept in Redis) or {'mismatch'}.
_RESOLVE = """
local check = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' then
  if not check then
    redis.call('SET', KEYS[2], ARGV[1])
    return {'ok'}
  end
  if check == ARGV[1] then return {'ok'} end
  return {'mismatch'}
end
local key = redis.call('GET', KEYS[1])
if key then return {'key', key} end
if check then return {'mismatch'} end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return {'key', ARGV[2]}
"""


class Tombstones:
    """The digest of customer ids under one key (see the module docstring)."""

    def __init__(self, key: str | bytes) -> None:
        self._key = key.encode() if isinstance(key, str) else key
        if not self._key:
            raise ValueError("the erasure key is empty")
        #: The erased-set member of a customer id. The recently asked are remembered (an event
        #: write digests its customers for the read, then again for the script: ~2 us each).
        self.of: Callable[[str], str] = functools.lru_cache(maxsize=CACHED)(self._digest)

    def _digest(self, customer_id: str) -> str:
        mac = hmac.digest(self._key, customer_id.encode(), "sha256")
        return MARK + mac[:DIGEST_BYTES].hex()

    def of_all(self, customer_ids: Iterable[str]) -> list[str]:
        return [self.of(c) for c in customer_ids]

    @property
    def check(self) -> str:
        """The check value stored beside the set: the digest of ``""`` (no customer's id)."""
        return self.of("")


class ErasedSet:
    """The erased customers as a container of ids: ``id in erased`` digests the id and looks it
    up. It cannot list the ids (nobody can): ``len`` is how many customers are erased."""

    def __init__(self, tombstones: Tombstones, members: Iterable[str]) -> None:
        self.tombstones = tombstones
        self.members = frozenset(members)

    def __contains__(self, customer_id: object) -> bool:
        return isinstance(customer_id, str) and self.tombstones.of(customer_id) in self.members

    def __len__(self) -> int:
        return len(self.members)

    def __bool__(self) -> bool:
        return bool(self.members)

    def among(self, customer_ids: Iterable[str]) -> Iterator[str]:
        """The erased ones of ``customer_ids``."""
        return (c for c in customer_ids if c in self)


def configured_key(settings: Settings) -> str | None:
    """The key of ``settings.privacy.erasure_key`` (a secret), or None."""
    secret = settings.privacy.erasure_key
    return None if secret is None else str(secret.get_secret_value())


def key_file(data_dir: Path, initial: str | None = None) -> str:
    """The key kept in ``<data_dir>/erasure.key`` (case 2 of the module docstring), made on
    first use from ``initial`` or 32 random bytes in hex, created exclusively with mode 0600
    (two processes starting at once both read the one that won)."""
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write((initial or secrets.token_hex(32)) + "\n")
    for _ in range(100):  # the winner may not have written it yet
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise StoreUnavailableError(f"{path} is empty: delete it only if no customer was erased")


def embedded_key(client: RedisClient, prefix: str, data_dir: Path) -> str:
    """The embedded server's key (``erasure.key`` of its data folder). A store that already
    keeps a key in Redis (written by a process given neither the setting nor the folder) has
    it moved into the file, and out of Redis: out of its files too from the next rewrite of
    the append-only file (the next erasure's)."""
    with store_errors("resolution of the erasure key"):
        kept = client.get(keys.erasure_key(prefix))
        key = key_file(data_dir, _text(kept) if kept else None)
        if kept and _text(kept) == key:
            client.delete(keys.erasure_key(prefix))
    return key


def _mismatch(prefix: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the erased set under {prefix!r} was written with another erasure key: set "
        "RECSYS_PRIVACY__ERASURE_KEY to the store's key (the embedded server keeps it in "
        "erasure.key of its data folder)"
    )


def resolve_call(prefix: str, configured: str | None) -> tuple[list[str], list[str]]:
    """The keys and arguments of the resolving script (sync and asyncio clients alike)."""
    fresh = secrets.token_hex(32)
    check = Tombstones(configured).check if configured else ""
    return (
        [keys.erasure_key(prefix), keys.erasure_check(prefix)],
        [check, fresh, Tombstones(fresh).check],
    )


def resolved(prefix: str, configured: str | None, reply: Any) -> Tombstones:
    """The tombstones from the resolving script's reply (see :func:`resolve_call`)."""
    status = _text(reply[0])
    if status == "ok" and configured:
        return Tombstones(configured)
    if status == "key":
        return Tombstones(_text(reply[1]))
    raise _mismatch(prefix)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve_key(client: RedisClient, prefix: str, configured: str | None) -> Tombstones:
    """The store's tombstones: the configured key, checked against the store, or the key kept in
    Redis (made on first use). Raises StoreUnavailableError for a key the set was not written
    with."""
    script_keys, args = resolve_call(prefix, configured)
    with store_errors("resolution of the erasure key"):
        reply = client.register_script(_RESOLVE)(keys=script_keys, args=args)
    return resolved(prefix, configured, reply)


def resolve(
    client: RedisClient,
    prefix: str,
    configured: str | None,
    after_migration: Callable[[], object] | None = None,
) -> Tombstones:
    """:func:`resolve_key`, then :func:`migrate_plain_ids`; when that migrated any,
    ``after_migration`` (the store's rewrite of the append-only file, when erasures rewrite it:
    the old files still hold the plain ids)."""
    tombstones = resolve_key(client, prefix, configured)
    if migrate_plain_ids(client, prefix, tombstones) and after_migration is not None:
        after_migration()
    return tombstones


async def resolve_async(client: Any, prefix: str, configured: str | None) -> Tombstones:
    """:func:`resolve_key` on a ``redis.asyncio`` client, without the migration (a writer of the
    service gets the store's tombstones, which migrated)."""
    script_keys, args = resolve_call(prefix, configured)
    with store_errors("resolution of the erasure key"):
        reply = await client.register_script(_RESOLVE)(keys=script_keys, args=args)
    return resolved(prefix, configured, reply)


class Resolver:
    """A store's tombstones, resolved once, on first use (a Redis call), for the event writers.

    ``client`` sync or ``redis.asyncio``; ``configured``: ``settings.privacy.erasure_key``;
    ``source``: called instead when given (the service passes its store's
    ``RedisFeatureStore.tombstones``, which also migrates an older set; in a thread for
    :meth:`get_async`)."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        configured: str | None = None,
        source: Callable[[], Tombstones] | None = None,
    ) -> None:
        self.client, self.prefix, self.configured, self.source = client, prefix, configured, source
        self._found: Tombstones | None = None

    def get(self) -> Tombstones:
        if self._found is None:
            self._found = (
                self.source() if self.source else resolve(self.client, self.prefix, self.configured)
            )
        return self._found

    async def get_async(self) -> Tombstones:
        if self._found is None:
            self._found = await (
                asyncio.to_thread(self.source)
                if self.source
                else resolve_async(self.client, self.prefix, self.configured)
            )
        return self._found

    def resolved(self) -> Tombstones:
        """What :meth:`get` or :meth:`get_async` found (they must have run)."""
        if self._found is None:
            raise InternalError("the erasure key was used before it was resolved")
        return self._found


def migrate_plain_ids(client: RedisClient, prefix: str, tombstones: Tombstones) -> int:
    """Replace the plain ids an older version left in the erased sets by their digests; how many.

    Per set, the members not starting with ``#`` (``SSCAN MATCH``: only those cross the network),
    then one ``MULTI``: ``SADD`` of their digests, ``SREM`` of the ids (the same key, so the same
    slot). Idempotent; the files on disk still hold the ids until the next rewrite of the
    append-only file (the caller's)."""
    migrated = 0
    with store_errors("migration of the erased set"):
        for shard in shards.known_shards(client, prefix):
            name = keys.erased_customers(prefix, shard)
            plain = sorted({_text(m) for m in client.sscan_iter(name, match="[^#]*", count=1000)})
            if not plain:
                continue
            pipe = client.pipeline(transaction=True)
            pipe.sadd(name, *tombstones.of_all(plain))
            pipe.srem(name, *plain)
            pipe.execute()
            migrated += len(plain)
    return migrated


def queue_check(
    pipe: Any, prefix: str, tombstones: Tombstones, groups: dict[shards.Shard, list[str]]
) -> None:
    """Queue one ``SMISMEMBER`` per shard of ``groups`` (customers by shard)."""
    for shard, group in groups.items():
        pipe.smismember(keys.erased_customers(prefix, shard), tombstones.of_all(group))


def take_check(groups: dict[shards.Shard, list[str]], replies: Iterator[Any]) -> set[str]:
    """The erased customers of ``groups``, from the replies :func:`queue_check` queued."""
    erased: set[str] = set()
    for group in groups.values():
        erased.update(c for c, hit in zip(group, next(replies), strict=True) if hit)
    return erased
