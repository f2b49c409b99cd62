"""The event path's parsed online states, kept per process and reused while their bytes match.

A busy customer's online state (``recsys.customers.online_state``: every purchase line since
training, up to about 100 KB of JSON) is read before each of their requests of events, and
parsing it costs more than everything else the plan does (measured: about 1.1 ms for a
2,000-line state). :class:`OnlineCache` keeps the parsed form of the states this process read
or wrote last, by customer, with their exact bytes: a state read again is reused only when
Redis answered the very same bytes (a state another process wrote since is parsed anew), so
the cache can never serve a stale state. Small states (parsing them is cheap) are not kept, and
the kept bytes are bounded (least recently used dropped first). Callers must not change a state
they got from here (``apply_events`` copies what it changes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final

import orjson

#: States smaller than this are parsed every time; at most this many bytes of states are kept.
MIN_BYTES: Final = 4_096
MAX_BYTES: Final = 8 * 1024 * 1024


class OnlineCache:
    """Parsed online states by customer (see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES, min_bytes: int = MIN_BYTES) -> None:
        self.max_bytes, self.min_bytes = max_bytes, min_bytes
        self._entries: OrderedDict[str, tuple[bytes, Any]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self._lock = threading.Lock()  # the sync writer runs in worker threads

    def parse(self, customer_id: str, raw: bytes) -> Any:
        """``raw`` (a customer's online state as read) parsed: the kept form when it is the
        same bytes, else parsed now (and kept)."""
        with self._lock:
            entry = self._entries.get(customer_id)
            if entry is not None and entry[0] == raw:
                self._entries.move_to_end(customer_id)
                self.hits += 1
                return entry[1]
        value = orjson.loads(raw)
        self.put(customer_id, raw, value)
        return value

    def put(self, customer_id: str, raw: bytes, value: Any) -> None:
        """Keep ``value``, the parsed form of ``raw`` (a state just read or written)."""
        with self._lock:
            old = self._entries.pop(customer_id, None)
            if old is not None:
                self._bytes -= len(old[0])
            if len(raw) < self.min_bytes or len(raw) > self.max_bytes:
                return
            self._entries[customer_id] = (raw, value)
            self._bytes += len(raw)
            while self._bytes > self.max_bytes:
                _, (dropped, _) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
