"""The page view's reader: one multiplexed connection per process, RESP parsed by hiredis.

Measured on the page view's read (4 commands in one round trip, 2 cores): redis.asyncio's
pipeline costs about 300 µs of CPU per read, most of it in its connection pool, response
callbacks and per-command bookkeeping; writing the same packed commands on a plain asyncio
connection and parsing the replies with ``hiredis.Reader`` costs about 30 µs. At a thousand page
views a second per worker that difference is a third of a core, so the hot path reads through
this module, and everything else (writes, bulk loads, administration, Redis Cluster, TLS) keeps
redis-py.

How it works. One connection carries every request of the event loop: a request writes its
packed commands in one ``write`` and waits for its number of replies; Redis answers in order, so
replies are handed out first-in first-out (the RESP pipelining contract). The timeout is Redis's
budget, not the event loop's lag: a reply that was there when a busy loop got round to the timer
counts. A request that really times out stops waiting, and its replies, when they come, are read
and dropped. A broken connection fails every waiting request with
:class:`~recsys.errors.StoreUnavailableError`; the next request opens a new one, and a request
that found the connection closed under it is sent once more on a new one. The command list
comes from :func:`feature_store.reads.read_commands` and the decoding from
:func:`feature_store.reads.decode_read`, the same ones the redis-py readers use, so the
two paths cannot drift apart.

The page view's answer write-back (``feature_store.answers``) goes on the same connection
without being awaited (:meth:`MultiplexedConnection.send_nowait`): its reply is handed to a
callback in its turn, and a page view that follows it on the connection reads after it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis

from feature_store import answers, keys
from feature_store.reads import decode_read, read_commands
from recsys.errors import InternalError, InvalidRequestError, StoreUnavailableError
from recsys.store import ReadPlan, ReadResult

Command = tuple[bytes | str | int | float, ...]


def pack(commands: Sequence[Command]) -> bytes:
    """Commands in the RESP wire format, concatenated (one ``write``; hiredis packs each)."""
    return b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Address:
    """Where one Redis server listens, from a ``redis://`` or ``unix://`` URL."""

    host: str | None
    port: int
    path: str | None  # a Unix socket
    db: int
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Address:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if parts.scheme not in ("redis", "unix") or "cluster" in query:
            raise InvalidRequestError(
                f"the multiplexed reader takes redis:// or unix://, not {parts.scheme}://"
            )
        db_text = query.get("db") or (parts.path.strip("/") if parts.scheme == "redis" else "")
        return cls(
            host=parts.hostname if parts.scheme == "redis" else None,
            port=parts.port or 6379,
            path=parts.path if parts.scheme == "unix" else None,
            db=int(db_text or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def handshake(self) -> list[Command]:
        """The commands a fresh connection sends first (AUTH, SELECT), if any."""
        commands: list[Command] = []
        if self.password is not None:
            user = (self.username,) if self.username else ()
            commands.append(("AUTH", *user, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class ConnectionLostError(StoreUnavailableError):
    """The connection closed before a request's replies were all read."""


@dataclass
class _Waiter:
    future: asyncio.Future[list[Any]]
    expected: int
    replies: list[Any]


class _Protocol(asyncio.Protocol):
    """One connection: FIFO replies to the requests written on it."""

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's transport (not an asyncio.Transport)
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[_Waiter] = collections.deque()
        self.broken: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._break(exc)
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream is out of step
                self._break(RuntimeError("unexpected reply"))
                return
            waiter = self.waiting[0]
            waiter.replies.append(reply)
            if len(waiter.replies) == waiter.expected:
                self.waiting.popleft()
                if not waiter.future.done():  # a timed-out request's replies are dropped
                    waiter.future.set_result(waiter.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(exc or ConnectionResetError("connection closed by Redis"))

    def _break(self, exc: BaseException) -> None:
        self.broken = exc
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(
                    ConnectionLostError(
                        f"Redis unavailable: connection lost ({type(exc).__name__})"
                    )
                )
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes, expected: int) -> _Waiter:
        assert self.transport is not None
        waiter = _Waiter(asyncio.get_running_loop().create_future(), expected, [])
        self.waiting.append(waiter)
        self.transport.write(payload)
        return waiter


class MultiplexedConnection:
    """Requests of one event loop over one Redis connection, each bounded by ``timeout_s``."""

    def __init__(self, address: Address, *, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.broken is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.broken is None:
                return self._protocol
            loop = asyncio.get_running_loop()
            address = self.address
            try:
                async with asyncio.timeout(self.timeout_s):
                    if address.path is not None:
                        _, protocol = await loop.create_unix_connection(_Protocol, address.path)
                    else:
                        host = address.host or "127.0.0.1"
                        _, protocol = await loop.create_connection(_Protocol, host, address.port)
                    handshake = address.handshake()
                    if handshake:
                        replies = await protocol.send(pack(handshake), len(handshake)).future
                        _raise_errors(replies)
            except (OSError, TimeoutError) as exc:
                raise StoreUnavailableError(
                    f"Redis unavailable: unreachable ({type(exc).__name__})"
                ) from None
            self._protocol = protocol
            return protocol

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to ``commands``, sent in one write; errors are those of recsys.errors.
        A connection found closed (a restarted server, an idle timeout) is replaced and the
        commands sent once more (reads only: sending them twice is harmless)."""
        try:
            return await self._execute(commands)
        except ConnectionLostError:
            return await self._execute(commands)

    async def _execute(self, commands: Sequence[Command]) -> list[Any]:
        protocol = await self._connected()
        waiter = protocol.send(pack(commands), len(commands))
        replies: list[Any] | None
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await waiter.future
        except TimeoutError:
            replies = await _answered_meanwhile(waiter)
        if replies is None:  # Redis did not answer: its late replies will be dropped
            raise StoreUnavailableError(
                f"Redis timeout: no answer within {self.timeout_s * 1000:.0f} ms"
            )
        _raise_errors(replies)
        return replies

    def send_nowait(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]] | None:
        """Write ``commands`` on the open connection without waiting: the future of their
        replies (an exception when the connection breaks first; a Redis error is a reply),
        or None when no connection is open now (a fire-and-forget write does not open one)."""
        protocol = self._protocol
        if protocol is None or protocol.broken is not None:
            return None
        return protocol.send(pack(commands), len(commands)).future

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


async def _answered_meanwhile(waiter: _Waiter) -> list[Any] | None:
    """The replies of a request whose timeout fired, when Redis had in fact answered in time.

    A busy event loop (a saturated worker running other requests' scoring) may run an expired
    timer before it reads the socket: uvloop runs timers before polling for I/O, and asyncio
    wakes the task after its timeout. The timeout is Redis's budget, not the loop's lag, so
    the replies already read, or read by one more turn of the loop (which polls the socket),
    count; None when they are still not all there."""
    if len(waiter.replies) < waiter.expected:
        await asyncio.sleep(0)
    return waiter.replies if len(waiter.replies) == waiter.expected else None


def _raise_errors(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.startswith(("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM")):
                raise StoreUnavailableError(f"Redis cannot answer now: {text.split(' ')[0]}")
            raise InternalError(f"Redis error on a read: {text}")


class MultiplexedReader:
    """:class:`recsys.store.AsyncFeatureReads` on a :class:`MultiplexedConnection`."""

    def __init__(
        self, url: str, prefix: str, *, timeout_ms: float, contacts_read: int = 50
    ) -> None:
        if timeout_ms <= 0:
            raise InvalidRequestError(f"Redis timeout must be positive, got {timeout_ms} ms")
        self.connection = MultiplexedConnection(Address.from_url(url), timeout_s=timeout_ms / 1000)
        self.prefix = prefix
        self.contacts_read = contacts_read

    @staticmethod
    def supports(url: str) -> bool:
        """True for the URLs this reader speaks (one server, plain TCP or a Unix socket)."""
        try:
            Address.from_url(url)
        except (InvalidRequestError, ValueError):
            return False
        return True

    async def read(self, plan: ReadPlan) -> ReadResult:
        if not plan.customer_ids and not plan.meta:
            return ReadResult([])
        commands = read_commands(self.prefix, plan, contacts_read=self.contacts_read)
        return decode_read(plan, await self.connection.execute(commands))

    def store_answer(self, command: Command, done: Callable[[str], None]) -> None:
        """The answer's write-back on the page views' connection, not awaited (no round trip
        added to the page view): ``done`` gets the outcome when Redis answers."""
        future = self.connection.send_nowait([command])
        if future is None:
            done(answers.FAILED)
            return

        def finished(future: asyncio.Future[list[Any]]) -> None:
            if future.cancelled() or future.exception() is not None:
                done(answers.FAILED)
                return
            (reply,) = future.result()
            failed = isinstance(reply, hiredis.ReplyError)
            done(answers.FAILED if failed else answers.outcome(reply))

        future.add_done_callback(finished)

    async def item_revision(self) -> int:
        (revision,) = await self.connection.execute([("GET", keys.item_revision(self.prefix))])
        return int(revision or 0)

    async def ping(self) -> bool:
        try:
            return (await self.connection.execute([("PING",)]))[0] in (b"PONG", "PONG")
        except (StoreUnavailableError, InternalError):
            return False

    async def aclose(self) -> None:
        self.connection.close()
