"""Pipelines packed by hiredis: the bulk reads and the event write without redis-py's per-argument
Python work.

redis-py packs every argument of every command in Python (an encoder call and a few
``isinstance`` per argument) and runs a response callback per reply. For the offers batch (3,000
commands per 1,000 customers) that was about 35 ms of CPU per batch, more than deciding the
offers; for a batch of 100 events the write script's ~3,000 arguments cost about as much as
planning them. Here the commands are packed by ``hiredis.pack_command`` (C), written in one send
on one of the client's own pooled connections, and their replies read back in order with the
connection's parser: the same round trip, about a fifth of the CPU (``benchmarks.ingest_profile``).

Replies are raw RESP values, as ``hiredis`` gives them, not redis-py's callbacks: ``SMISMEMBER``
answers ints, ``ZMSCORE`` bytes, ``ZRANGE ... WITHSCORES`` a flat member/score list (the decoders
here accept both forms). Errors: every reply is read (the connection stays in step), then the
first error reply is raised; a connection that failed mid-way is dropped, not reused.

Only a plain ``redis.Redis`` / ``redis.asyncio.Redis`` client is packed; a Redis Cluster client
(keys on several nodes) runs the same commands on its own pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import redis.asyncio
from redis.exceptions import ResponseError

Command = tuple[Any, ...]


def pack(commands: Sequence[Command]) -> bytes:
    """The commands in RESP, concatenated (hiredis packs each: str, bytes, int and float)."""
    return b"".join([hiredis.pack_command(command) for command in commands])


def _raise_first(replies: list[Any], errors: list[ResponseError]) -> list[Any]:
    if errors:
        raise errors[0]
    return replies


def execute(client: Any, commands: Sequence[Command]) -> list[Any]:
    """The commands' replies, in order, in one round trip (see the module docstring)."""
    if not commands:
        return []
    if type(client) is not redis.Redis:  # a cluster (or another client): its own pipeline
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())
    pool = client.connection_pool
    connection = pool.get_connection()
    replies: list[Any] = []
    errors: list[ResponseError] = []
    try:
        connection.send_packed_command([pack(commands)])
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as error:
                replies.append(error)
                errors.append(error)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    return _raise_first(replies, errors)


async def execute_async(client: Any, commands: Sequence[Command]) -> list[Any]:
    """:func:`execute` on a ``redis.asyncio`` client."""
    if not commands:
        return []
    if type(client) is not redis.asyncio.Redis:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())
    pool = client.connection_pool
    connection = await pool.get_connection()
    replies: list[Any] = []
    errors: list[ResponseError] = []
    try:
        await connection.send_packed_command([pack(commands)])
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
                errors.append(error)
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return _raise_first(replies, errors)
