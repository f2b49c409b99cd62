"""API keys (``X-API-Key``) with scopes ``read``, ``write`` and ``admin`` (admin implies all).

With keys configured every key-protected route needs a key holding one of the route's scopes:
no or unknown key is 401, a key without the scope is 403. With **no** keys configured the service
is a local one: it answers loopback clients (127.0.0.0/8, ::1) only and refuses everyone else
with 403 (the CLI also refuses to bind a non-loopback address without keys).

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every configured
key without an early exit, so the time taken says nothing about how close a guess was.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from recsys.errors import ForbiddenError, UnauthorizedError

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


@functools.lru_cache(maxsize=4096)  # per request otherwise: ipaddress parsing is slow
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped); False for names and anything else."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the scopes granted, and a short non-secret key fingerprint for logs."""

    scopes: frozenset[str]
    key_id: str | None = None  # first 8 hex digits of the key's SHA-256; None for loopback

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class KeyRing:
    """The configured keys, held as digests."""

    def __init__(self, keys: Mapping[str, frozenset[str]]) -> None:
        self._keys = [(_digest(key), frozenset(scopes)) for key, scopes in keys.items()]

    @property
    def open(self) -> bool:
        """No keys configured: loopback clients only, with every scope."""
        return not self._keys

    def lookup(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: frozenset[str] | None = None
        for candidate, scopes in self._keys:  # no early exit
            if hmac.compare_digest(candidate, digest):
                found = scopes
        return None if found is None else Principal(found, digest.hex()[:8])

    def authorize(self, presented: str | None, client_host: str | None) -> Principal:
        """The caller's principal, or :class:`UnauthorizedError` / :class:`ForbiddenError`."""
        if self.open:
            if not is_loopback(client_host):
                raise ForbiddenError(
                    "no API keys are configured, so this server answers loopback clients only"
                )
            return Principal(frozenset({"admin"}))
        if not presented:
            raise UnauthorizedError(f"missing {API_KEY_HEADER} header")
        principal = self.lookup(presented)
        if principal is None:
            raise UnauthorizedError(f"unknown API key in {API_KEY_HEADER}")
        return principal


def _client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


def authorize(request: Request, scopes: tuple[str, ...], api_key: str | None = None) -> Principal:
    """The caller of ``request`` when their key holds one of ``scopes``; records the key's
    fingerprint for the access log. ``api_key``: the ``X-API-Key`` header, read from the
    request when not given (routes with a lean path check the key with this directly)."""
    keyring: KeyRing = request.app.state.keyring
    if api_key is None:
        api_key = request.headers.get(API_KEY_HEADER)
    principal = keyring.authorize(api_key, _client_host(request))
    if not any(principal.allows(scope) for scope in scopes):
        raise ForbiddenError(f"this operation needs the {' or '.join(scopes)} scope")
    request.state.key_id = principal.key_id
    return principal


def require(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency granting access to keys holding any of ``scopes`` (admin holds all)."""
    wanted = scopes or ("read",)

    async def dependency(  # async: no I/O, so no thread-pool hop
        request: Request, api_key: Annotated[str | None, Security(_header)]
    ) -> Principal:
        return authorize(request, wanted, api_key or "")

    return dependency


async def loopback_unless_keyed(request: Request) -> None:
    """For public routes (health, metrics): open with keys; loopback-only without them."""
    keyring: KeyRing = request.app.state.keyring
    if keyring.open and not is_loopback(_client_host(request)):
        raise ForbiddenError("no API keys are configured, so this server answers loopback only")
