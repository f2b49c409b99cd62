"""Redis killed (``kill -9``) and paused (``SIGSTOP``) under a bounded request loop against the
service on a real uvicorn server: every page view answered 200 (``fallback`` only while Redis is
away), no acknowledged event lost, and recovery without restarting the service.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis
from servingkit import READ, WRITE

from feature_store import keys
from feature_store.embedded import EmbeddedRedis

RECS = "/v1/customers/kitchen-1/recommendations"
#: Requests of one loop, and the pause between them: about three seconds in all.
REQUESTS = 300
PACE_S = 0.008
PAUSE_S = 0.5


@dataclass
class Loop:
    """What a request loop saw: (time, status, strategy) of each page view, acknowledged ids."""

    views: list[tuple[float, int, str | None]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0


def run_loop(
    http: httpx.Client, name: str, faults: dict[int, Callable[[], None]]
) -> tuple[Loop, dict[int, float]]:
    """``REQUESTS`` page views, an event posted every other one; ``faults[i]`` runs before
    request ``i``. Returns the loop and when each fault ran."""
    loop, fault_times = Loop(), {}
    for i in range(REQUESTS):
        if i in faults:
            faults[i]()
            fault_times[i] = time.monotonic()
        response = http.get(RECS, params={"k": 3})
        strategy = response.json().get("strategy") if response.status_code == 200 else None
        loop.views.append((time.monotonic(), response.status_code, strategy))
        if i % 2 == 0:
            event_id = f"{name}-{i}"
            event = {"customer_id": "kitchen-1", "event_type": "view", "item_id": "G2",
                     "event_id": event_id}  # fmt: skip
            posted = http.post("/v1/events", json=event, headers=WRITE)
            assert posted.status_code in (202, 503), posted.text  # 503: not acknowledged
            if posted.status_code == 202:
                loop.acknowledged.append(event_id)
            else:
                loop.refused += 1
        time.sleep(PACE_S)
    return loop, fault_times


def stream_event_ids(url: str) -> set[str]:
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(keys.event_stream("pl"))
    finally:
        client.close()
    return {fields[b"event_id"].decode() for _, fields in entries}


def wait_for(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``check()`` held (polled every 20 ms); fails after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def assert_answered_and_recovered(loop: Loop, down_from: float, up_by: float) -> None:
    """Every page view 200; fallbacks only between ``down_from`` and the first personalized
    answer after it, which came no later than ``up_by``; personalized ever after."""
    assert [status for _, status, _ in loop.views] == [200] * REQUESTS
    back = next(t for t, _, s in loop.views if t > down_from and s == "personalized")
    assert back <= up_by, f"personalized again {back - down_from:.2f} s after the fault"
    for t, _, strategy in loop.views:
        if t < down_from or t >= back:
            assert strategy == "personalized", (t - down_from, strategy)
        else:
            assert strategy in ("personalized", "fallback")
    assert any(s == "fallback" for t, _, s in loop.views if down_from <= t < back)


def test_a_killed_redis_is_back_within_2_s_without_restarting_the_service(
    service: str, supervised: EmbeddedRedis
) -> None:
    with httpx.Client(base_url=service, headers=READ, timeout=5) as http:
        first = {"customer_id": "kitchen-1", "event_type": "purchase", "item_id": "G4",
                 "quantity": 1, "price": 3.0, "event_id": "before-kill"}  # fmt: skip
        assert http.post("/v1/events", json=first, headers=WRITE).status_code == 202
        assert http.get(RECS).json()["strategy"] == "personalized"
        assert supervised.pid is not None
        os.kill(supervised.pid, signal.SIGKILL)
        assert wait_for(lambda: http.get(RECS).json()["strategy"] == "personalized", 2.0) < 2.0
        wait_for(lambda: http.get("/readyz").status_code == 200, 2.0)
        again = {**first, "event_id": "after-kill"}
        wait_for(lambda: http.post("/v1/events", json=again, headers=WRITE).status_code == 202, 2.0)
    assert {"before-kill", "after-kill"} <= stream_event_ids(supervised.url)
    assert supervised.restarts == 1


def test_kill_9_under_load_answers_every_page_view_and_loses_no_acknowledged_event(
    service: str, supervised: EmbeddedRedis
) -> None:
    def kill() -> None:
        assert supervised.pid is not None
        os.kill(supervised.pid, signal.SIGKILL)

    with httpx.Client(base_url=service, headers=READ, timeout=5) as http:
        loop, at = run_loop(http, "kill", {60: kill})
    assert_answered_and_recovered(loop, at[60], at[60] + 2.0)
    assert set(loop.acknowledged) <= stream_event_ids(supervised.url)
    assert len(loop.acknowledged) >= REQUESTS // 2 - loop.refused >= 100
    assert supervised.restarts == 1


def test_a_paused_redis_gets_fallbacks_then_recovers_with_every_acknowledged_event(
    service: str, supervised: EmbeddedRedis
) -> None:
    """Paused for 0.5 s (a timer resumes it): writes in flight wait, page views do not."""
    pid = supervised.pid
    assert pid is not None
    resumed: list[float] = []

    def resume() -> None:
        os.kill(pid, signal.SIGCONT)
        resumed.append(time.monotonic())

    timer = threading.Timer(PAUSE_S, resume)

    def pause() -> None:
        os.kill(pid, signal.SIGSTOP)
        timer.start()

    with httpx.Client(base_url=service, headers=READ, timeout=5) as http:
        try:
            loop, at = run_loop(http, "pause", {60: pause})
        finally:
            timer.join()
    assert_answered_and_recovered(loop, at[60], resumed[0] + 2.0)
    assert set(loop.acknowledged) <= stream_event_ids(supervised.url)
    assert supervised.restarts == 0 and supervised.pid == pid  # paused is not dead
