"""A bounded schemathesis run over every operation: no 5xx, no response-schema violation.

The real app behind uvicorn on a free loopback port, the session's Redis, the offers bundle
(so the offers and next-best-action operations answer too), a fixed seed, and a time bound.
The full run (>= 5,000 cases) is ``python -m benchmarks.fuzz``.
"""

from __future__ import annotations

from servingkit import serve

from benchmarks.fuzz import FUZZ_KEYS, fuzz
from recsys.config import Settings
from serving.app import create_app

EXAMPLES_PER_OPERATION = 25
BUDGET_S = 75.0


def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_violation(
    offers_settings: Settings,
) -> None:
    settings = offers_settings.model_copy(
        update={"api_keys": {**offers_settings.api_keys, **FUZZ_KEYS}}
    )
    with serve(create_app(settings)) as base_url:
        report = fuzz(base_url, examples=EXAMPLES_PER_OPERATION, seed=20_260_301, budget_s=BUDGET_S)
    print(report.line())
    assert report.operations >= 15 and report.cases >= 200, report.line()
    assert report.server_errors == 0, "\n".join(report.failures)
    assert report.schema_violations == 0, "\n".join(report.failures)
