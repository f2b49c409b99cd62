"""The store's circuit breaker and the fallback log (``serving.circuit``), on a fake clock."""

from __future__ import annotations

import logging

import pytest

from serving.circuit import CircuitBreaker, FallbackLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_failure_does_not_open_the_circuit() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_s=0.5, clock=Clock())
    breaker.failed()
    assert breaker.allow() and not breaker.is_open
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert breaker.allow()  # two in a row, then a success reset the count: still closed


def test_repeated_failures_open_it_then_one_probe_closes_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, open_s=0.5, clock=clock)
    for _ in range(3):
        breaker.failed()
    assert breaker.is_open and not breaker.allow()
    clock.now += 0.6
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.succeeded()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, open_s=1.0, clock=clock)
    breaker.failed()
    breaker.failed()
    clock.now += 1.1
    assert breaker.allow()
    breaker.failed()
    assert not breaker.allow()
    clock.now += 1.1
    assert breaker.allow()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(open_s=0)


def test_fallbacks_are_logged_at_warning_at_most_once_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    fallbacks = FallbackLog(log_every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, "recsys.serving"):
        assert fallbacks.record("store_unavailable", "timeout")
        assert not any(fallbacks.record("store_unavailable") for _ in range(40))
        assert fallbacks.record("model_unavailable")  # another reason has its own period
        clock.now += 10.0
        assert fallbacks.record("store_unavailable")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 3
    assert "store_unavailable" in lines[0] and "1 answer(s)" in lines[0] and "timeout" in lines[0]
    assert "41 answer(s)" in lines[2]  # the 40 held back, and this one
