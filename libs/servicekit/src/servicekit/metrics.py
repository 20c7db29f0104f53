"""RED metrics of the HTTP API: requests by route, method and status, and their latency.

    http_requests_total{route, method, status}
    http_request_duration_seconds{route, method}   (histogram)

`route` is the matched route's template (`/v1/products/{product_id}`), never the raw path, and never
a tenant id: cardinality is bounded by the routes the service declares. A request no route took
(404, or refused before routing, e.g. 413 on its declared length) is `route="<unmatched>"`; a
method outside the standard ones is `method="OTHER"`.

Pure ASGI (one more function call per request, no task), and the label children are cached per
(route, method, status): `labels()` costs a lock and a dict lookup in prometheus_client.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)  # fmt: skip
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_counters: dict[tuple[str, str, int], Any] = {}
_histograms: dict[tuple[str, str], Any] = {}


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    counter = _counters.get((route, method, status))
    if counter is None:
        counter = _counters[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    histogram = _histograms.get((route, method))
    if histogram is None:
        histogram = _histograms[(route, method)] = DURATION.labels(route, method)
    counter.inc()
    histogram.observe(seconds)


class REDMetricsMiddleware:
    """Outermost of the service's middlewares, so every answer is counted, refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router put the matched route into this same scope dict on its way down.
            route = scope.get("route")
            template = getattr(route, "path_format", None) or UNMATCHED
            method = scope["method"]
            _observe(
                template, method if method in METHODS else "OTHER", status, time.perf_counter() - started
            )
