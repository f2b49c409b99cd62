"""The framework floor: FastAPI answering a fixed 10-item recommendation body, nothing else.

``benchmarks.floor`` serves it beside the real service with the same uvicorn options and the
same workers (``python -m benchmarks.bare_app --port N --workers W``: the service's
:func:`serving.server.run_workers`, each worker on a socket of its own), so the ratio of their
throughputs says how much of the framework's budget our page view uses.
"""

from __future__ import annotations

import argparse

import orjson
from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI()

_BODY = orjson.dumps(
    {
        "customer_id": "12345",
        "context": "home",
        "items": [
            {
                "item_id": f"85{i:03d}A",
                "score": 0.5 - i / 100,
                "reason": "recommended_for_you",
                "title": "WHITE HANGING HEART T-LIGHT HOLDER",
                "category": "candles",
                "price": 2.55,
            }
            for i in range(10)
        ],
        "strategy": "personalized",
        "model_version": "20261201T000000Z-000000",
    }
)


@app.get("/v1/customers/{customer_id}/recommendations")
async def recommendations(customer_id: str, k: int = 10) -> Response:
    return Response(_BODY, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def main() -> None:
    from serving.server import event_loop_and_parser, run_workers

    parser = argparse.ArgumentParser(description="the bare app under the service's workers")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    loop, http = event_loop_and_parser()
    run_workers(
        "benchmarks.bare_app:app", args.workers, host="127.0.0.1", port=args.port, loop=loop,
        http=http, ws="none", log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
