"""The framework floor: FastAPI answering a fixed 10-item recommendation body, nothing else.

``benchmarks.floor`` serves it beside the real service with the same uvicorn options, so the
ratio of their throughputs says how much of the framework's budget our page view uses.
"""

from __future__ import annotations

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
