"""A data subject's export and erasure over HTTP, checked against the store and the disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from servingkit import ADMIN, API_KEYS, READ, WRITE, TestClient

from feature_store.embedded import EmbeddedRedis
from feature_store.embedded_dir import bundled_redis_server
from feature_store.export import erased_customer_ids
from recsys.config import Settings
from serving.app import create_app

CUSTOMER = "kitchen-1"


def _purchase(n: int) -> dict[str, object]:
    return {"customer_id": CUSTOMER, "event_type": "purchase", "item_id": "K3",
            "quantity": 1, "price": 4.0, "event_id": f"p-{n}"}  # fmt: skip


def test_the_export_holds_the_customers_events_from_the_durable_stream(
    client: TestClient,
) -> None:
    for n in range(3):
        assert client.post("/v1/events", json=_purchase(n), headers=WRITE).status_code == 202
    other = {**_purchase(9), "customer_id": "garden-1"}
    assert client.post("/v1/events", json=other, headers=WRITE).status_code == 202
    held = client.get(f"/v1/customers/{CUSTOMER}/export", headers=ADMIN).json()
    assert [e["event_id"] for e in held["events"]] == ["p-0", "p-1", "p-2"]
    assert {(e["customer_id"], e["event_type"], e["item_id"]) for e in held["events"]} == {
        (CUSTOMER, "purchase", "K3")
    }
    assert client.delete(f"/v1/customers/{CUSTOMER}", headers=ADMIN).status_code == 204
    assert client.get(f"/v1/customers/{CUSTOMER}/export", headers=ADMIN).json()["events"] == []


def aof_commands(data_dir: Path) -> list[list[bytes]]:
    """Every command of the append-only files under ``data_dir`` (plain RESP, no RDB part)."""
    commands: list[list[bytes]] = []
    files = [p for p in data_dir.rglob("appendonly*") if p.is_file() and ".manifest" not in p.name]
    assert files, f"no append-only file under {data_dir}"
    for path in files:
        data, pos = path.read_bytes(), 0
        assert not data.startswith(b"REDIS"), "an RDB preamble: strings may be compressed"
        while pos < len(data):
            assert data[pos : pos + 1] == b"*", f"{path}: not RESP at {pos}"
            end = data.index(b"\r\n", pos)
            count, pos = int(data[pos + 1 : end]), end + 2
            args = []
            for _ in range(count):
                end = data.index(b"\r\n", pos)
                size = int(data[pos + 1 : end])
                args.append(data[end + 2 : end + 2 + size])
                pos = end + 2 + size + 2
            commands.append(args)
    return commands


def _binaries() -> list[str | None]:
    """The shipped redis-server (6.x: one ``appendonly.aof``) and, when there is another on
    PATH (7.x: the multi-part ``appendonlydir/``), that one too."""
    on_path = shutil.which("redis-server")
    shipped = bundled_redis_server()
    return [None, *([on_path] if on_path and shipped and Path(on_path) != shipped else [])]


@pytest.fixture(params=_binaries())
def disk_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis", persist=True, binary=request.param) as server:
        yield server


def occurrences(data_dir: Path, token: bytes) -> dict[str, int]:
    """Every file under ``data_dir`` (append-only files, manifest, any RDB) -> how many times
    it holds ``token``."""
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("appendonly") for p in files), sorted(map(str, files))
    return {str(p.relative_to(data_dir)): p.read_bytes().count(token) for p in files}


def test_after_an_erasure_the_files_on_disk_no_longer_hold_the_customer(
    disk_redis: EmbeddedRedis, artifacts: Path, tmp_path: Path
) -> None:
    """Not even the suppression list (``<p>:erased``, what keeps them out of training and
    ingest) names them: it holds a keyed digest of the id."""
    settings = Settings(
        redis_url=disk_redis.url, artifacts=artifacts, api_keys=API_KEYS, erase_rewrites_aof=True
    )
    token = CUSTOMER.encode()
    with TestClient(create_app(settings)) as client:
        for n in range(5):
            assert client.post("/v1/events", json=_purchase(n), headers=WRITE).status_code == 202
        assert client.get(f"/v1/customers/{CUSTOMER}", headers=READ).status_code == 200
        before = [c for c in aof_commands(disk_redis.data_dir) if any(token in a for a in c)]
        assert len(before) >= 10  # batch record, live record, event ids, stream entries
        assert client.delete(f"/v1/customers/{CUSTOMER}", headers=ADMIN).status_code == 204
        commands = aof_commands(disk_redis.data_dir)
        assert [c for c in commands if any(token in a for a in c)] == []
        found = occurrences(disk_redis.data_dir, token)
        assert sum(found.values()) == 0, found  # not in any file: AOF parts, manifest, RDB
        tombstone = client.app.state.serving.store.tombstones.of(CUSTOMER).encode()
        assert [b"SADD", b"pl:erased", tombstone] in commands  # what keeps them out
        assert client.get(f"/v1/customers/{CUSTOMER}/export", headers=ADMIN).json()["erased"]
        late = client.post("/v1/events", json=_purchase(7), headers=WRITE)
        assert late.json() == {"accepted": 0, "duplicates": 0, "ignored": 1}
        assert client.get(f"/v1/customers/{CUSTOMER}", headers=READ).status_code == 404
        erased = erased_customer_ids(settings)  # what `recsys train` leaves out
        assert CUSTOMER in erased and "garden-1" not in erased
        garden = client.get("/v1/customers/garden-1/recommendations", headers=READ).json()
        assert garden["strategy"] == "personalized"  # everyone else is still there
