"""Operations: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Depends
from starlette.responses import Response

from recsys.errors import UnavailableError
from serving.auth import loopback_unless_keyed
from serving.metrics import CONTENT_TYPE
from serving.models import Health
from serving.routes.common import MetricsDep, ServingDep, problems

router = APIRouter(tags=["operations"], dependencies=[Depends(loopback_unless_keyed)])


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz(serving: ServingDep) -> Health:
    """The process is alive (says nothing about the model or the store)."""
    snapshot = serving.snapshot
    return Health(status="ok", model_version=snapshot.version if snapshot else None)


@router.get("/readyz", summary="Readiness", response_model=Health, responses=problems(503))
async def readyz(serving: ServingDep) -> Health:
    """Ready to serve: a model is loaded, the store answers and holds its features."""
    ready, reason = await anyio.to_thread.run_sync(serving.ready)
    if not ready:
        raise UnavailableError(f"not ready: {reason}")
    snapshot = serving.snapshot
    return Health(status="ok", model_version=snapshot.version if snapshot else None)


_METRICS_EXAMPLE = (
    "# HELP recsys_fallbacks_total Answers degraded to a fallback, by reason\n"
    "# TYPE recsys_fallbacks_total counter\n"
    'recsys_fallbacks_total{reason="store_unavailable"} 0.0\n'
)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "the Prometheus text exposition format (version 1.0.0)",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}},
        }
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
