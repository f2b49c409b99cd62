"""The durable event stream read back: every shard's entries in one order, and the events file.

On one server the stream is one key; on Redis Cluster it is one shard per hash slot
(``feature_store.shards``). :func:`stream_rows` merges the shards by entry id (the time Redis
appended the entry, then its sequence), so the export reads as one stream in append order
whatever the layout; each shard is read in chunks (``XRANGE ... COUNT``), so memory stays bounded
by the chunk per shard, not by the stream.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
from collections.abc import Container, Iterator
from pathlib import Path
from typing import IO, cast

from feature_store import keys, shards
from feature_store.connection import RedisClient, store_errors
from recsys.schema import EVENT_COLUMNS

Entry = tuple[tuple[int, int], dict[str, str]]


def _entry_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.decode().partition("-")
    return int(ms), int(seq or 0)


def _shard_entries(client: RedisClient, stream: str, chunk: int) -> Iterator[Entry]:
    start = "-"
    while True:
        with store_errors("export of the event stream"):
            entries = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                client.xrange(stream, min=start, max="+", count=chunk),
            )
        for entry_id, fields in entries:
            yield _entry_id(entry_id), {k.decode(): v.decode() for k, v in fields.items()}
        if len(entries) < chunk:
            return
        start = "(" + entries[-1][0].decode()


def stream_rows(
    client: RedisClient,
    prefix: str,
    chunk: int = 10_000,
    exclude: Container[str] = frozenset(),
) -> Iterator[dict[str, str]]:
    """Every entry of the event stream (all shards, merged by entry id), oldest first, as
    events-format text columns, but those of the customers in ``exclude`` (the erased ones)."""
    streams = [keys.event_stream(prefix, shard) for shard in shards.known_shards(client, prefix)]
    per_shard = max(min(chunk, 100), chunk // len(streams))
    merged = heapq.merge(
        *(_shard_entries(client, s, per_shard) for s in streams), key=lambda entry: entry[0]
    )
    for _, row in merged:
        if row.get("customer_id") not in exclude:
            yield row


def _open_text(path: Path, *, gzipped: bool) -> IO[str]:
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "wb"), encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def export_stream(
    client: RedisClient,
    prefix: str,
    path: Path,
    chunk: int = 10_000,
    exclude: Container[str] = frozenset(),
) -> int:
    """Write the event stream to ``path`` as an events file (CSV; gzip when it ends ``.gz``),
    without the events of the customers in ``exclude``.

    Written to a temporary file beside ``path`` and renamed into place when complete.
    Returns the number of events written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with _open_text(tmp, gzipped=path.name.endswith(".gz")) as fh:  # the target's name
            writer = csv.DictWriter(fh, fieldnames=list(EVENT_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in stream_rows(client, prefix, chunk, exclude):
                writer.writerow(row)
                count += 1
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
