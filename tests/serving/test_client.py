"""``pelanggan.client`` against a real uvicorn server: answers, streaming export, problem+json
exceptions, and events retried with their ids so a lost answer is not counted twice."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
from servingkit import ADMIN_KEY, READ_KEY, WRITE_KEY, metric, serve

from feature_store.embedded import free_port
from pelanggan.client import AsyncClient, Client, ClientError, RetryPolicy, ServerError
from recsys.config import Settings
from serving.app import create_app

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)
VIEW = {"customer_id": "loyal-1", "event_type": "view", "item_id": "K2"}  # no event_id


@pytest.fixture
def server(offers_settings: Settings) -> Iterator[str]:
    with serve(create_app(offers_settings)) as base:
        yield base


def raw(base: str, path: str, key: str = READ_KEY) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"X-API-Key": key}, timeout=10)


def scrape(base: str) -> str:
    return httpx.get(f"{base}/metrics", timeout=10).text


def test_the_client_answers_what_the_api_answers(server: str) -> None:
    with Client(server, READ_KEY) as client:
        recs = client.recommendations("loyal-1", k=4, context="home", exclude=["K1"])
        assert recs == raw(server, "/v1/customers/loyal-1/recommendations?k=4&exclude=K1").json()
        assert recs["strategy"] == "personalized" and len(recs["items"]) == 4
        assert "K1" not in [item["item_id"] for item in recs["items"]]
        offers = client.offers("loyal-1", channel="email", k=2)
        assert offers == raw(server, "/v1/customers/loyal-1/offers?channel=email&k=2").json()
        batch = client.offers_batch(["loyal-1", "nobody-9"], channel="email", k=1)
        assert [r["customer_id"] for r in batch["results"]] == ["loyal-1", "nobody-9"]
        nba = client.next_best_action("loyal-1")
        assert (
            nba["action"] == raw(server, "/v1/customers/loyal-1/next-best-action").json()["action"]
        )
        assert client.customer("loyal-1")["segment"] == "champions"
    with Client(server, ADMIN_KEY) as admin:
        lines = list(admin.export_offers(channel="email", k=1))
    expected = raw(server, "/v1/offers/export?channel=email&k=1", ADMIN_KEY).text.splitlines()
    assert lines == [orjson.loads(line) for line in expected] and lines


def test_problem_json_becomes_an_exception_of_its_status_family(server: str) -> None:
    with Client(server) as anonymous:
        with pytest.raises(ClientError) as unauthorized:
            anonymous.recommendations("loyal-1")
    assert unauthorized.value.status == 401 and unauthorized.value.title
    with Client(server, READ_KEY) as client:
        with pytest.raises(ClientError) as invalid:
            client.recommendations("loyal-1", k=0)
        assert invalid.value.status == 422 and invalid.value.type.endswith("validation")
        assert "k" in (invalid.value.detail or "")
        with pytest.raises(ClientError) as missing:
            client.customer("nobody-9")
        assert missing.value.status == 404 and missing.value.request_id
        with pytest.raises(ClientError) as forbidden:  # read key, admin route
            list(client.export_offers())
        assert forbidden.value.status == 403
        with pytest.raises(ClientError) as write_needed:  # 4xx: never retried
            client.send_event({"customer_id": "loyal-1", "event_type": "view", "item_id": "K2"})
        assert write_needed.value.status == 403
    text = scrape(server)
    assert metric(text, "recsys_http_requests_total", route="/v1/events", method="POST",
                  status="403") == 1  # fmt: skip


def test_events_get_ids_and_a_lost_answer_is_retried_without_double_counting(
    server: str,
) -> None:
    port = int(server.rsplit(":", 1)[1])
    with DroppingProxy(port, drop=1) as proxy, Client(proxy, WRITE_KEY, retry=FAST) as client:
        counts = client.send_event(
            {"customer_id": "loyal-1", "event_type": "view", "item_id": "K2"}
        )
    # the first attempt was applied, its answer lost; the retry is the same event: a duplicate
    assert counts == {"accepted": 0, "duplicates": 1, "ignored": 0}
    text = scrape(server)
    assert metric(text, "recsys_events_total", outcome="accepted") == 1
    assert metric(text, "recsys_events_total", outcome="duplicate") == 1
    with Client(server, READ_KEY) as client:
        assert client.customer("loyal-1")["recent_views"] == ["K2"]


def test_a_503_is_retried_a_bounded_number_of_times(offers_settings: Settings) -> None:
    dead = offers_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with serve(create_app(dead)) as base, Client(base, WRITE_KEY, retry=FAST) as client:
        with pytest.raises(ServerError) as unavailable:
            client.send_events([{"customer_id": "a", "event_type": "view", "item_id": "K2"}])
        assert unavailable.value.status == 503 and unavailable.value.retry_after == 1
        attempts = metric(scrape(base), "recsys_http_requests_total", route="/v1/events",
                          method="POST", status="503")  # fmt: skip
    assert attempts == 3


def test_the_async_client(server: str) -> None:
    async def run() -> None:
        async with AsyncClient(server, ADMIN_KEY, retry=FAST) as client:
            recs = await client.recommendations("loyal-1", k=3)
            assert [i["item_id"] for i in recs["items"]] == [
                i["item_id"] for i in raw(server, "/v1/customers/loyal-1/recommendations?k=3")
                .json()["items"]
            ]  # fmt: skip
            event = {"customer_id": "loyal-1", "event_type": "view", "item_id": "K4",
                     "event_id": "async-1"}  # fmt: skip
            assert (await client.send_events([event]))["accepted"] == 1
            assert (await client.send_event(event))["duplicates"] == 1  # the caller's own id
            lines = [line async for line in client.export_offers(channel="email", k=1)]
            assert {line["customer_id"] for line in lines} >= {"loyal-1"}
            assert (await client.offers_batch(["loyal-1"]))["results"][0]["offers"]
            with pytest.raises(ClientError) as missing:
                await client.customer("nobody-9")
            assert missing.value.status == 404

    asyncio.run(run())


class DroppingProxy:
    """A TCP proxy to ``127.0.0.1:port`` whose first ``drop`` connections deliver the request
    and then close before the answer reaches the client (a lost answer)."""

    def __init__(self, port: int, drop: int) -> None:
        self.upstream, self.drop = port, drop
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            dropping, self.drop = self.drop > 0, self.drop - 1
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client, dropping), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket, drop: bool = False) -> None:
    try:
        while data := source.recv(65536):
            if drop:  # the answer arrived: lose it
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
