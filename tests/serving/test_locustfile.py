"""``benchmarks/locustfile.py`` against a real server: the ids come from the server, every
caller's flow runs, and nothing fails (a behaviour check; the rates are in the README)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servingkit import serve

from recsys.config import Settings
from serving.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_caller_runs_against_the_server_ids(
    offers_settings: Settings, tmp_path: Path
) -> None:
    if importlib.util.find_spec("locust") is None:  # importing it would monkey-patch pytest
        pytest.skip("locust is not installed (the bench extra)")
    # the server shares this process and the machine with Locust: a slow read here is the
    # test's load, not the service's fault, so the page-view read may wait (no fallback)
    serving = offers_settings.serving.model_copy(update={"redis_timeout_ms": 5000.0})
    settings = offers_settings.model_copy(update={"api_keys": {}, "serving": serving})
    env = {**os.environ, "RECSYS_LOADTEST_THINK": "0.01", "RECSYS_LOADTEST_MAX_FAIL_RATIO": "0"}
    env.pop("RECSYS_LOADTEST_API_KEY", None)
    with serve(create_app(settings)) as url:
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "locustfile.py")]
            + ["--headless", "-u", "8", "-r", "8", "-t", "8s", "--host", url]
            + ["--csv", str(tmp_path / "lt"), "--only-summary", "--loglevel", "WARNING"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,  # no artifacts folder to read ids from: they must come from the server
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(tmp_path / "lt_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert rows["/v1/model/sample-ids"]["Request Count"] == "1"  # once per process
    for name in (
        "/v1/customers/[id]/recommendations",
        "/v1/customers/[id]/recommendations?context=product",
        "/v1/events",
        "/v1/offers/batch",
        "/v1/events (batch)",
        "/v1/customers/[id]/recommendations?context=home (app)",
    ):
        assert int(rows[name]["Request Count"]) > 0, name
    assert rows["Aggregated"]["Failure Count"] == "0"
