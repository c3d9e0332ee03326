"""The endpoints operators and their tools call: liveness, readiness, metrics."""

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.readiness import Readiness
from thumbproxy.web.observe import Observation

METRICS = web.AppKey("metrics", Metrics)
READINESS = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers; no dependency is asked."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when every required check passes, else 503; one entry per check."""
    ready, report = await request.app[READINESS].report()
    return web.json_response(report, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the service's metrics; OpenMetrics when the scraper asks for it."""
    registry = request.app[METRICS].registry
    if "application/openmetrics-text" in request.headers.get("Accept", ""):
        # prometheus_client leaves its OpenMetrics generate_latest unannotated; it returns bytes.
        return web.Response(
            body=generate_openmetrics(registry),  # type: ignore[no-untyped-call]
            headers={"Content-Type": OPENMETRICS_TYPE},
        )
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_operations_routes(app: web.Application, observation: Observation) -> None:
    """Register /healthz, /readyz and /metrics."""
    observation.add(app, hdrs.METH_GET, "/healthz", healthz)
    observation.add(app, hdrs.METH_GET, "/readyz", readyz)
    observation.add(app, hdrs.METH_GET, "/metrics", metrics)
