"""The ``recsys`` command line, run as a user runs it: a separate process, exit status, stderr."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys.bundle import LATEST_FILE
from recsys.io.loaders import load_interactions

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without any ``RECSYS_`` setting, the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def recsys(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pelanggan.cli", *map(str, args)],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,  # a command that should refuse must not hang the suite by serving
        check=False,
    )


@dataclass(frozen=True)
class Generated:
    events: Path
    catalog: Path
    run: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    where = tmp_path_factory.mktemp("generate")
    run = recsys(
        "generate", "--customers", "200", "--items", "60", "--days", "90", "--out", "X.csv.gz",
        cwd=where,
    )  # fmt: skip
    return Generated(where / "X.csv.gz", where / "X_catalog.csv", run)


def test_generate_writes_a_loadable_events_file_and_its_catalogue(generated: Generated) -> None:
    assert generated.run.returncode == 0, generated.run.stderr
    assert generated.events.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the name says
    result = load_interactions(generated.events, catalog_path=generated.catalog)
    assert result.format == "events"
    assert 0 < result.interactions["customer_id"].nunique() <= 200
    assert len(result.catalog) == 60
    assert result.report.counts["catalog_items_derived"] == 0  # every item is listed
    assert f"{result.report.rows_read:,} events" in generated.run.stdout


def test_train_on_a_malformed_file_fails_naming_file_row_and_problem_and_writes_nothing(
    tmp_path: Path,
) -> None:
    events = tmp_path / "bad events.csv"
    events.write_text(
        "customer_id,event_type,timestamp,item_id,price\n"
        "C1,view,2025-01-02 10:00:00,I1,\n"
        "C1,purchase,2025-01-02 10:05:00,I1,2.5\n"
        "C2,view,yesterday,I2,\n",
        encoding="utf-8",
    )
    out = tmp_path / "artifacts"
    run = recsys("train", "--events", events, "--out", out, cwd=tmp_path)
    assert run.returncode != 0
    assert f"{events}, row 4: timestamp 'yesterday' is not a valid date and time" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (out / LATEST_FILE).exists()
    assert not out.exists() or list(out.iterdir()) == []  # no version, no temporary directory


def test_train_on_a_small_synthetic_file_writes_a_version_and_latest(
    generated: Generated, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    run = recsys(
        "train", "--events", generated.events, "--catalog", generated.catalog, "--out", out,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    version = (out / LATEST_FILE).read_text().strip()
    assert (out / version / "manifest.json").is_file()
    assert [p.name for p in out.iterdir() if p.is_dir()] == [version]
    assert f"wrote model version {version}" in run.stdout


def test_serve_on_all_interfaces_without_api_keys_refuses(tmp_path: Path) -> None:
    run = recsys(
        "serve", "--host", "0.0.0.0", "--port", "0", "--artifacts", tmp_path / "artifacts",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode != 0
    assert "refusing to serve on '0.0.0.0' without API keys" in run.stderr
    assert "RECSYS_API_KEYS" in run.stderr
    assert not (tmp_path / "artifacts").exists()  # refused before starting anything


def _two_events(url: str, prefix: str) -> None:
    """Two accepted events in the stream of the store at ``url`` (as ``POST /v1/events``)."""
    from datetime import datetime

    import redis

    from feature_store.ingest import EventWriter
    from recsys.customers.live_update import OnlineModel, plan_updates
    from recsys.events import utcnow, validate_batch

    online = OnlineModel(version=None, as_of=datetime(2024, 1, 1))
    events = validate_batch(
        [{"customer_id": f"C{n}", "event_type": "view", "item_id": "I1"} for n in range(2)]
    )
    client = redis.Redis.from_url(url)
    try:
        EventWriter(client, prefix, stream_maxlen=0).ingest(
            events, None, lambda snaps, fresh: plan_updates(online, snaps, fresh, utcnow())
        )
    finally:
        client.close()


def _exported(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[1:]


def test_export_events_uses_the_embedded_server_a_running_service_owns(tmp_path: Path) -> None:
    """No second redis-server on the live data folder: the tool uses the running one."""
    from feature_store.embedded import EmbeddedRedis

    artifacts = tmp_path / "artifacts"
    with EmbeddedRedis(artifacts / "redis") as running:
        _two_events(running.url, "pl")
        out = tmp_path / "events.csv"
        run = recsys("export-events", "--out", out, cwd=tmp_path, RECSYS_ARTIFACTS=str(artifacts))
        assert run.returncode == 0, run.stderr
        assert f"already running (process {os.getpid()}), on {running.url}" in run.stdout
        assert "wrote 2 events" in run.stdout and len(_exported(out)) == 2
        assert running.running and running.restarts == 0


def test_train_leaves_out_a_customer_erased_in_the_embedded_store(
    generated: Generated, tmp_path: Path
) -> None:
    """The erasure and ``recsys train`` share the key of ``erasure.key`` in the data folder;
    neither the store nor its files hold the id afterwards."""
    from feature_store.connection import connect
    from feature_store.embedded import EmbeddedRedis
    from feature_store.redis_store import RedisFeatureStore
    from feature_store.tombstones import embedded_key
    from recsys.bundle import read_bundle

    artifacts = tmp_path / "artifacts"
    events = load_interactions(generated.events, catalog_path=generated.catalog).interactions
    customer = str(events["customer_id"].dropna().iloc[0])
    with EmbeddedRedis(artifacts / "redis") as running:
        client = connect(running.url, timeout_ms=5000)
        store = RedisFeatureStore(
            client,
            "pl",
            rewrite_aof_on_erase=True,
            erasure_key=embedded_key(client, "pl", running.data_dir),
        )
        store.erase_customer(customer)
        files = [p for p in running.data_dir.rglob("*") if p.is_file()]
        assert not any(customer.encode() in p.read_bytes() for p in files)
        run = recsys(
            "train", "--events", generated.events, "--catalog", generated.catalog, "--out",
            artifacts, cwd=tmp_path, RECSYS_ARTIFACTS=str(artifacts),
        )  # fmt: skip
        store.close()
    assert run.returncode == 0, run.stderr
    assert "leaving out 1 erased customers" in run.stdout
    trained = read_bundle(artifacts / (artifacts / LATEST_FILE).read_text().strip())
    assert customer not in set(trained.customer_ids) and len(trained.customer_ids) > 100


def test_every_store_command_takes_redis_url(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    _two_events(redis_url, redis_prefix)
    out = tmp_path / "events.csv"
    run = recsys(
        "export-events", "--redis-url", redis_url, "--out", out, cwd=tmp_path,
        RECSYS_REDIS_PREFIX=redis_prefix, RECSYS_ARTIFACTS=str(tmp_path / "none"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert len(_exported(out)) == 2 and "embedded Redis" not in run.stdout
    assert not (tmp_path / "none").exists()  # no embedded server was started
    for command in ("demo", "train", "serve", "export-events"):
        helped = recsys(command, "--help", cwd=tmp_path)
        assert "--redis-url" in helped.stdout, command


def test_demo_says_which_redis_server_binary_and_version_it_runs(tmp_path: Path) -> None:
    from feature_store.embedded import find_redis_server
    from feature_store.embedded_dir import server_version

    run = recsys(
        "demo", "--no-serve", "--dir", tmp_path / "demo", "--customers", "60", "--items", "20",
        "--days", "30", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    binary = find_redis_server()
    assert f"embedded Redis {server_version(binary)} ({binary}) started on" in run.stdout


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    run = recsys("--version", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"recsys {version('pelanggan')}"


def test_every_option_of_every_command_has_help_text() -> None:
    import argparse

    from pelanggan.cli import COMMANDS, _parser

    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, command in [("recsys", parser), *sub.choices.items()]
        for action in command._actions
        if action.option_strings and not (action.help and action.help.strip())
    ]
    assert missing == []
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert all(helps.get(name) for name in COMMANDS)


def test_train_help_describes_its_options(tmp_path: Path) -> None:
    run = recsys("train", "--help", cwd=tmp_path)
    assert run.returncode == 0
    assert "events file: .csv, .csv.gz or .parquet" in run.stdout
    assert "train on data strictly before this date" in run.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other server listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_demo_on_a_busy_port_says_so_before_doing_anything(tmp_path: Path, busy_port: int):
    run = recsys("demo", "--dir", tmp_path / "demo", "--port", str(busy_port), cwd=tmp_path)
    assert run.returncode == 2
    assert f"port {busy_port} on 127.0.0.1 is already in use" in run.stderr
    assert f"make demo PORT={busy_port + 1}" in run.stderr
    assert run.stdout == ""  # no "generating ...", no curl lines for someone else's server
    assert not (tmp_path / "demo").exists()


def test_serve_on_a_busy_port_refuses_before_starting_redis(tmp_path: Path, busy_port: int):
    artifacts = tmp_path / "artifacts"
    run = recsys("serve", "--port", str(busy_port), "--artifacts", artifacts, cwd=tmp_path)
    assert run.returncode == 2
    assert f"port {busy_port} on 127.0.0.1 is already in use" in run.stderr
    assert not artifacts.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_checks_the_port_before_installing(tmp_path: Path, busy_port: int) -> None:
    venv = tmp_path / "venv"
    run = subprocess.run(
        ["make", "-s", "demo", f"PORT={busy_port}", f"VENV={venv}", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert f"port {busy_port} on 127.0.0.1 is already in use" in run.stderr
    assert not venv.exists()  # nothing installed, generated or printed first
    assert "curl" not in run.stdout


def test_the_port_probe_sees_a_free_port_as_free() -> None:
    from pelanggan.ports import port_problem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None
    assert "not a TCP port" in (port_problem("127.0.0.1", 70000) or "")
