"""A circuit breaker for the store reads of one process, and the fallback log.

One slow read is not an outage: a read that fails or times out answers that one request with
the fallback, and the next request tries the store again. Only ``failure_threshold`` failures in
a row **open** the breaker: for ``open_s`` seconds requests skip the store (answering the
fallback at once instead of each waiting out the timeout), then one request at a time
**probes** it (half-open); the first success closes the breaker, a failed probe opens it again.

Every fallback is counted by the caller (``serving.metrics``) and logged here at WARNING, at
most once per ``log_every_s`` per reason, with the number seen since the last line, so a storm
of fallbacks is visible without flooding the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("recsys.serving")


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        open_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or open_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and open_s > 0")
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._clock = clock
        self._failures = 0  # consecutive
        self._open_until = 0.0
        self._probing = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._failures >= self.failure_threshold

    def allow(self) -> bool:
        """Whether this request may use the store now (closed, or the one half-open probe)."""
        if self._failures < self.failure_threshold:
            return True
        with self._lock:
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True  # this request is the probe
            return True

    def succeeded(self) -> None:
        if self._failures:
            with self._lock:
                if self._failures >= self.failure_threshold:
                    log.warning("the store answers again: circuit closed")
                self._failures = 0
                self._probing = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.failure_threshold:
                if self._failures == self.failure_threshold:
                    log.warning(
                        "the store failed %d times in a row: circuit open, fallback answers "
                        "for %.1f s before the next probe",
                        self._failures,
                        self.open_s,
                    )
                self._open_until = self._clock() + self.open_s


class FallbackLog:
    """WARNING lines about fallback answers, at most one per reason every ``log_every_s``."""

    def __init__(
        self, *, log_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log_every_s = log_every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def record(self, reason: str, cause: str = "") -> bool:
        """Count one fallback; True when this call wrote a log line."""
        now = self._clock()
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        last = self._last.get(reason)
        if last is not None and now - last < self.log_every_s:
            return False
        count = self._unlogged.pop(reason)
        self._last[reason] = now
        log.warning(
            "answering the fallback (%s): %d answer(s) since the last report%s",
            reason,
            count,
            f"; {cause}" if cause else "",
        )
        return True
