"""Schemathesis over every operation of ``/openapi.json``: ``python -m benchmarks.fuzz``.

:func:`fuzz` generates cases for each operation of a running server's OpenAPI document
(schemathesis 4, seeded hypothesis), sends them with a key that holds every scope, and counts
server errors (any 5xx) and response-schema violations (a body or status the document does
not describe). The test suite runs a bounded :func:`fuzz` over the known-answer app
(``tests/serving/test_fuzz.py``); this command runs the full one (>= 5,000 cases by default)
over a model trained on a small synthetic shop, with an embedded Redis, and prints the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
import uvicorn
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

#: The fuzzing key: every scope, so no operation stops at 401/403.
FUZZ_KEY = "fuzz-key-every-scope-0123456789"
FUZZ_KEYS = {FUZZ_KEY: frozenset({"read", "write", "admin"})}


@dataclass
class FuzzReport:
    cases: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    operations: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few, described

    def line(self) -> str:
        return (
            f"{self.cases:,} cases over {self.operations} operations in {self.seconds:.1f} s: "
            f"{self.server_errors} server errors (5xx), "
            f"{self.schema_violations} response-schema violations"
        )


def _record(report: FuzzReport, case: Any, response: Any, error: BaseException) -> None:
    if len(report.failures) < 20:
        report.failures.append(
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{str(error)[:300]} (body {response.text[:200]!r})"
        )


def fuzz(base_url: str, *, examples: int, seed: int = 0, budget_s: float = 600.0) -> FuzzReport:
    """Up to ``examples`` cases per operation of ``base_url``'s OpenAPI document; stops early
    when ``budget_s`` seconds are spent (a bound, for the test suite)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    started = time.monotonic()
    headers = {"X-API-Key": FUZZ_KEY}
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations += 1

        @hypothesis.seed(seed)
        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=operation.as_strategy())
        def one(case: Any) -> None:
            if time.monotonic() - started > budget_s:
                return
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            report.cases += 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except (AssertionError, BaseExceptionGroup) as exc:
                report.server_errors += 1
                _record(report, case, response, exc)
            if response.status_code >= 500:
                return
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except (AssertionError, BaseExceptionGroup) as exc:
                report.schema_violations += 1
                _record(report, case, response, exc)

        one()
    report.seconds = time.monotonic() - started
    return report


@contextlib.contextmanager
def uvicorn_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    from feature_store.embedded import free_port

    port = free_port()
    config = uvicorn.Config(app, host=host, port=port, log_level="error", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _train(root: Path) -> Path:
    from recsys.io.synthetic import generate_events, write_events
    from training.pipeline import train_bundle

    events, catalog = generate_events(300, 80, 120, seed=7)
    data = root / "events.csv"
    write_events(events, data)
    catalog_path = root / "catalog.csv"
    catalog.to_csv(catalog_path, index=False)
    return Path(train_bundle(data, root / "artifacts", catalog_path=catalog_path)).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=400, help="cases per operation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import logging

    from feature_store.embedded import EmbeddedRedis
    from recsys.config import ServingConfig, Settings
    from serving.app import create_app

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        root = Path(tmp)
        artifacts = _train(root)
        with EmbeddedRedis(root / "redis", persist=False) as redis_server:
            # a Redis timeout of 1 s, not the serving 50 ms: this measures answers, not
            # latency, and a 503 for a read slowed by a busy machine is not a defect
            settings = Settings(
                redis_url=redis_server.url,
                artifacts=artifacts,
                api_keys=FUZZ_KEYS,
                serving=ServingConfig(redis_timeout_ms=1000.0),
            )
            with uvicorn_thread(create_app(settings)) as base_url:
                report = fuzz(base_url, examples=args.examples, seed=args.seed)
    print(report.line())
    for failure in report.failures:
        print("  " + failure)
    return 0 if report.server_errors == 0 and report.schema_violations == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
