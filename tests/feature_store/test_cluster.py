"""The service on a real Redis Cluster: bulk load, page views, multi-slot event batches, erasure.

A 3-master cluster is started on loopback ports (``redis-server --cluster-enabled yes`` in
temporary directories, then ``redis-cli --cluster create``), and a real serving app (uvicorn, in
a thread) runs on it with a ``redis+cluster://`` URL. Skipped only when ``redis-server`` or
``redis-cli`` is not on ``PATH``.
"""

from __future__ import annotations

import copy
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.cluster

from feature_store import keys
from feature_store.export import erased_customer_ids, export_events
from feature_store.offer_stats import OfferStats
from recsys.bundle import write_bundle
from recsys.config import Settings
from recsys.decisions.offer_set import Budget
from recsys.events import utcnow
from recsys.io.loaders import load_interactions
from serving.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))  # the serving kit
from servingkit import ADMIN, API_KEYS, READ, WRITE, make_bundle, serve  # noqa: E402

SERVER, CLI = shutil.which("redis-server"), shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    SERVER is None or CLI is None,
    reason="redis-server and redis-cli are needed on PATH to start a local Redis Cluster",
)


def _wait(predicate, what: str, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: {what} took longer than {seconds} s")
        time.sleep(0.05)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (``port + 10000``, so at most 55535) is free too."""
    while True:
        port = random.randint(20_000, 55_000)
        if port not in taken and _bindable(port) and _bindable(port + 10_000):
            return port


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


def _cluster_ok(ports: list[int]) -> bool:
    for port in ports:
        info = redis.Redis(port=port, socket_timeout=1).cluster("info")
        if info.get("cluster_state") != "ok":
            return False
    return True


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster on loopback; its seed URL."""
    assert SERVER is not None and CLI is not None
    root = tmp_path_factory.mktemp("cluster")
    ports: list[int] = []
    for _ in range(3):
        ports.append(_cluster_port(ports))
    servers = []
    try:
        for port in ports:
            work = root / str(port)
            work.mkdir()
            command = [
                SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", str(work / "nodes.conf"), "--dir", str(work),
                "--save", "", "--appendonly", "no", "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        for port in ports:
            _wait(lambda port=port: _answers(port), f"start of the node on port {port}")
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait(lambda: _cluster_ok(ports), "agreement on the slots")
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture
def settings(cluster_url: str, tmp_path: Path) -> Settings:
    artifacts = tmp_path / "artifacts"
    write_bundle(make_bundle(), artifacts)
    return Settings(
        redis_url=cluster_url,
        redis_prefix=f"cl-{uuid.uuid4().hex[:8]}",
        artifacts=artifacts,
        api_keys=API_KEYS,
    )


def recommended(http: httpx.Client, customer: str, **params: object) -> list[str]:
    response = http.get(f"/v1/customers/{customer}/recommendations", params=params, headers=READ)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["strategy"] != "fallback", body  # the store answered
    return [item["item_id"] for item in body["items"]]


def test_the_service_loads_serves_ingests_and_erases_on_a_cluster(
    settings: Settings, tmp_path: Path
) -> None:
    customers = [f"m{i}" for i in range(40)]
    client = redis.cluster.RedisCluster.from_url(settings.redis_url.replace("+cluster", ""))
    nodes_of = {client.get_node_from_key(keys.customer_live("p", c)).port for c in customers}
    assert len(nodes_of) == 3  # the batch below crosses slots and nodes
    batch = [
        {"customer_id": c, "event_type": kind, "item_id": item, "event_id": f"{c}-{kind}"}
        for c in customers
        for kind, item in (("view", "G2"), ("purchase", "G1"))
    ]
    batch.append({"customer_id": "kitchen-1", "event_type": "purchase", "item_id": "K1"})

    with serve(create_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as http:
        _wait(lambda: http.get("/readyz").status_code == 200, "readiness (bulk load)")
        assert recommended(http, "kitchen-1", k=1) == ["K1"]  # the batch record, loaded
        answer_key = keys.customer_answer(settings.redis_prefix, "kitchen-1")
        _wait(lambda: client.exists(answer_key) == 1, "the answer's write-back")
        assert recommended(http, "kitchen-1", k=1) == ["K1"]  # the stored answer, on its slot
        hits = 'recsys_answer_cache_total{result="hit"} 1.0'
        assert hits in http.get("/metrics").text

        response = http.post("/v1/events", json={"events": batch}, headers=WRITE)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": len(batch), "duplicates": 0, "ignored": 0}
        again = http.post("/v1/events", json={"events": batch[:-1]}, headers=WRITE)
        assert again.json() == {"accepted": 0, "duplicates": len(batch) - 1, "ignored": 0}

        assert "K1" not in recommended(http, "kitchen-1", k=12)  # bought: not offered again
        assert recommended(http, "kitchen-1", k=1) != ["K1"]  # the event invalidated it
        assert recommended(http, "m7", k=2, context="cart") != []
        m7_answer = keys.customer_answer(settings.redis_prefix, "m7")
        _wait(lambda: client.exists(m7_answer) == 1, "m7's answer's write-back")
        profile = http.get("/v1/customers/m7", headers=READ).json()
        assert profile["features"]["frequency"] == 1

        assert http.delete("/v1/customers/m7", headers=ADMIN).status_code == 204
        late = {"customer_id": "m7", "event_type": "view", "item_id": "G3", "event_id": "late"}
        after = http.post("/v1/events", json={"events": [late, {**late, "customer_id": "m8"}]},
                          headers=WRITE)  # fmt: skip
        assert after.json() == {"accepted": 1, "duplicates": 0, "ignored": 1}
        held = http.get("/v1/customers/m7/export", headers=ADMIN).json()
        assert held["erased"] is True and held["live"] is None
        assert client.exists(m7_answer) == 0  # the erasure deleted the stored answer

    prefix = settings.redis_prefix
    slots = {int(s) for s in client.smembers(keys.stream_shards(prefix))}
    assert slots == {keys.customer_slot(c) for c in [*customers, "kitchen-1"]}  # one shard each
    erased = erased_customer_ids(settings)
    assert "m7" in erased and len(erased) == 1 and "m8" not in erased
    m7_shard = keys.erased_customers(prefix, keys.slot_tag(keys.customer_slot("m7")))
    (member,) = client.smembers(m7_shard)  # on m7's slot, as a keyed digest of the id
    assert member.startswith(b"#") and b"m7" not in member
    path = tmp_path / "events.csv"
    assert export_events(settings, path) == len(batch) - 2 + 1  # m7's two gone, m8's late one
    exported = load_interactions(path, fmt="events").interactions
    assert "m7" not in set(exported["customer_id"])
    assert exported["event_id"].tolist()[-1] == "late"  # the shards merged in append order
    assert set(exported["customer_id"]) == (set(customers) - {"m7"}) | {"kitchen-1"}
    client.close()


def test_offer_responses_are_counted_on_a_cluster(cluster_url: str, tmp_path: Path) -> None:
    """An offer_sent and an offer_redeemed of customers on every node change the next
    decision's evidence and propensity (the counts on the offers' slots, the attribution on the
    customers'), a retried request counts nothing twice, an erased customer's events count
    nothing (their shard's erased set), a redemption spends the budget and sends are reserved
    within it."""
    from servingkit import make_offers_bundle

    artifacts = tmp_path / "artifacts"
    bundle = make_offers_bundle()
    bundle.extra = copy.deepcopy(bundle.extra)  # the kit's catalogue is shared: not into it
    for offer in bundle.extra["offers"]["offers"]:
        if offer["offer_id"] == "welcome-5":  # a budget: its use is read with the counts
            offer["budget"] = {"sends_total": 1000, "redemptions_total": 1000}
    write_bundle(bundle, artifacts)
    settings = Settings(
        redis_url=cluster_url,
        redis_prefix=f"cl-{uuid.uuid4().hex[:8]}",
        artifacts=artifacts,
        api_keys=API_KEYS,
    )
    client = redis.cluster.RedisCluster.from_url(cluster_url.replace("+cluster", ""))
    customers = [f"ghost-{i}" for i in range(1, 13)]
    assert len({client.get_node_from_key(keys.customer_live("p", c)).port for c in customers}) == 3
    props = {"offer_id": "welcome-5", "channel": "email"}
    events = [
        {"customer_id": c, "event_type": kind, "properties": props, "timestamp": at}
        for c in customers
        for kind, at in (
            ("offer_sent", "2026-01-01T10:00:00"),
            ("offer_redeemed", "2026-01-01T11:00:00"),
        )
        if kind == "offer_sent" or c in customers[:3]
    ]

    def welcome(http: httpx.Client) -> dict[str, object]:
        response = http.get("/v1/customers/ghost-99/offers?channel=email", headers=READ)
        assert response.status_code == 200, response.text
        return next(o for o in response.json()["offers"] if o["offer_id"] == "welcome-5")

    with serve(create_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as http:
        _wait(lambda: http.get("/readyz").status_code == 200, "readiness (bulk load)")
        before = welcome(http)
        assert before["evidence"] == {"responses": 0, "sends": 0}
        seen = {"customer_id": "ghost-12", "event_type": "view", "item_id": "G1"}
        assert http.post("/v1/events", json={"events": [seen]}, headers=WRITE).status_code == 202
        assert http.delete("/v1/customers/ghost-12", headers=ADMIN).status_code == 204
        for _ in range(2):  # the second time a retry: the same sends and responses
            response = http.post("/v1/events", json={"events": events}, headers=WRITE)
            assert response.status_code == 202, response.text
            after = welcome(http)
            assert after["evidence"] == {"responses": 3, "sends": 11}  # not ghost-12's
        assert after["propensity"] != before["propensity"]
    stats = client.hgetall(keys.offer_stats(settings.redis_prefix, "welcome-5"))
    assert stats == {b"s:prospect|awareness|email": b"11", b"r:prospect|awareness|email": b"3"}
    total = keys.offer_budget(settings.redis_prefix, "welcome-5", "redemptions", keys.BUDGET_TOTAL)
    assert client.get(total) == b"3"
    stats_store = OfferStats(client, settings.redis_prefix)
    budget = Budget(sends_total=5)
    assert [stats_store.reserve("welcome-5", 3, budget, utcnow()) for _ in range(2)] == [3, 2]
    client.close()


def test_plain_ids_of_an_older_layout_are_migrated_on_their_own_slot(settings: Settings) -> None:
    """An older version's erased shards held ids: each becomes its digest, on the same slot."""
    from feature_store.connection import connect
    from feature_store.ingest import EventWriter, IngestResult
    from feature_store.redis_store import RedisFeatureStore
    from recsys.customers.live_update import OnlineModel, plan_updates
    from recsys.events import utcnow, validate_batch

    prefix = settings.redis_prefix
    client = connect(settings.redis_url or "", timeout_ms=5000)
    old = ["m3", "m11", "m29"]
    for customer in old:
        shard = keys.slot_tag(keys.customer_slot(customer))
        client.sadd(keys.erased_customers(prefix, shard), customer)
        client.sadd(keys.stream_shards(prefix), str(keys.customer_slot(customer)))
    online = OnlineModel(version=None, as_of=utcnow())
    events = validate_batch(
        [{"customer_id": c, "event_type": "view", "item_id": "G1"} for c in [*old, "m4"]]
    )
    writer = EventWriter(client, prefix, stream_maxlen=0)  # resolves the key: migrates
    result = writer.ingest(events, None, lambda s, f: plan_updates(online, s, f, utcnow()))
    assert result == IngestResult(accepted=1, duplicates=0, ignored=3)
    store = RedisFeatureStore(client, prefix)
    for customer in old:
        shard = keys.erased_customers(prefix, keys.slot_tag(keys.customer_slot(customer)))
        assert client.smembers(shard) == {store.tombstones.of(customer).encode()}
    client.close()
