"""Every Prometheus metric of the service, defined once, on a registry of the app's own.

Label values stay bounded: routes are route templates, never a frame id, basename, label text
or URL.
"""

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from thumbproxy import __version__

# From a 1 ms memory hit to a 10 s render of a large frame on a busy pool.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ARCHIVE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RouteStats:
    """One route template's answers by status, and how many durations fell in each bucket, and their sum."""

    __slots__ = ("answers", "durations", "seconds")

    def __init__(self) -> None:
        self.answers: dict[int, int] = {}
        # Not cumulative; the last is +Inf.
        self.durations = [0] * (len(REQUEST_BUCKETS) + 1)
        self.seconds = 0.0

    def observe(self, status: int, seconds: float) -> None:
        """Count one answer with this status, taking this long."""
        answers = self.answers
        answers[status] = answers.get(status, 0) + 1
        # Prometheus buckets are "less than or equal": the first bound not below the duration.
        self.durations[bisect_left(REQUEST_BUCKETS, seconds)] += 1
        self.seconds += seconds


class RequestStats:
    """thumbproxy_requests_total and thumbproxy_request_duration_seconds, kept in plain numbers.

    Every request updates them, so they skip prometheus_client's locks, label lookup and per-bucket
    loop: each route holds its own RouteStats, only touched from the event loop's thread, where
    /metrics also reads them.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._routes: dict[str, RouteStats] = {}
        registry.register(self)

    def route(self, route: str) -> RouteStats:
        """The stats of this route template, to observe its answers."""
        return self._routes.setdefault(route, RouteStats())

    def collect(self) -> Iterator[Metric]:
        """The two families, as Prometheus reads them; a route not answered yet is left out."""
        answers = CounterMetricFamily(
            "thumbproxy_requests", "Answered HTTP requests by route template and status", labels=["route", "status"]
        )
        for route, stats in self._routes.items():
            for status, count in stats.answers.items():
                answers.add_metric([route, str(status)], count)
        yield answers
        durations = HistogramMetricFamily(
            "thumbproxy_request_duration_seconds", "Time to answer a request, by route template", labels=["route"]
        )
        bounds = [str(bound) for bound in REQUEST_BUCKETS] + ["+Inf"]
        for route, stats in self._routes.items():
            if stats.answers:
                durations.add_metric([route], list(zip(bounds, accumulate(stats.durations))), stats.seconds)
        yield durations


class LabelledCounts:
    """A counter family kept in plain numbers, for counts bumped on every cache hit.

    It skips prometheus_client's lock and label lookup: it is only touched from the event loop's
    thread, where /metrics also reads it.
    """

    def __init__(self, name: str, documentation: str, labels: list[str], registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._counts: dict[tuple[str, ...], int] = {}
        registry.register(self)

    def inc(self, *values: str) -> None:
        """Count one event with these label values, in the order of the labels."""
        self._counts[values] = self._counts.get(values, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The family, as Prometheus reads it."""
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, count in self._counts.items():
            family.add_metric(list(values), count)
        yield family


class Metrics:
    """The service's metrics; one instance per application, so tests and apps never share counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("thumbproxy_build", "Version of the running service", registry=registry).info({"version": __version__})
        self.requests = RequestStats(registry)
        self.cache_requests = LabelledCounts(
            "thumbproxy_cache_requests",
            "Thumbnail cache lookups by level (memory, disk, s3) and result (hit, miss, error)",
            ["level", "result"],
            registry,
        )
        self.renders = Counter(
            "thumbproxy_renders",
            "Renders performed by kind (mono, color) and result (ok, error)",
            ["kind", "result"],
            registry=registry,
        )
        self.render_duration = Histogram(
            "thumbproxy_render_duration_seconds",
            "Time from handing a render to the pool to its result, by kind",
            ["kind"],
            buckets=RENDER_BUCKETS,
            registry=registry,
        )
        self.renders_in_progress = Gauge(
            "thumbproxy_renders_in_progress",
            "Renders running in a pool worker now",
            registry=registry,
        )
        self.render_queue_depth = Gauge(
            "thumbproxy_render_queue_depth",
            "Renders waiting for a free pool worker",
            registry=registry,
        )
        self.coalesced_requests = Counter(
            "thumbproxy_coalesced_requests",
            "Requests that joined identical work already under way",
            registry=registry,
        )
        self.color_alignments = Counter(
            "thumbproxy_color_alignments",
            "Colour composites by how their frames were aligned (wcs, registration, none)",
            ["method"],
            registry=registry,
        )
        self.archive_requests = Counter(
            "thumbproxy_archive_requests",
            "Archive calls by operation (frame, list, download) and status (the HTTP status, or timeout, error)",
            ["operation", "status"],
            registry=registry,
        )
        self.archive_request_duration = Histogram(
            "thumbproxy_archive_request_duration_seconds",
            "Time of archive calls by operation",
            ["operation"],
            buckets=ARCHIVE_BUCKETS,
            registry=registry,
        )
        self.download_bytes = Counter(
            "thumbproxy_download_bytes",
            "Bytes of FITS files downloaded from the archive",
            registry=registry,
        )
        self.s3_requests = Counter(
            "thumbproxy_s3_requests",
            "S3 calls by operation (get, put, head) and result (ok, miss, error)",
            ["operation", "result"],
            registry=registry,
        )
        self.archive_retries = Counter(
            "thumbproxy_archive_retries",
            "Archive calls tried again after a connection error, 502, 503 or 504, by operation",
            ["operation"],
            registry=registry,
        )
        self.stale_records = Counter(
            "thumbproxy_stale_records",
            "Frame records used past their time to live because the archive was failing",
            registry=registry,
        )
        self.archive_public_fallbacks = Counter(
            "thumbproxy_archive_public_fallbacks",
            "Archive calls answered from the public view because the archive "
            "failed a token's call with a 500, as it does while its portal is down (a caller's token: twice)",
            registry=registry,
        )
        self.archive_throttled_seconds = Gauge(
            "thumbproxy_archive_throttled_seconds",
            "Seconds until the archive takes this replica's own calls "
            "again (anonymous or ARCHIVE_API_TOKEN) after throttling them (429); 0 when it takes them now",
            registry=registry,
        )
        self.local_archive_unreadable_files = Gauge(
            "thumbproxy_local_archive_unreadable_files",
            "FITS files of a file:// archive's directory left out "
            "because they cannot be read (each named in one warning)",
            registry=registry,
        )
        self.renders_refused = Counter(
            "thumbproxy_renders_refused",
            "Requests answered 503 because THUMBPROXY_MAX_PENDING renders were queued",
            registry=registry,
        )
        self.connections_open = Gauge(
            "thumbproxy_connections_open",
            "Client connections open (THUMBPROXY_MAX_CONNECTIONS at most)",
            registry=registry,
        )
        self.connections_closed = Counter(
            "thumbproxy_connections_closed",
            "Client connections the server ended itself: slow_head (no complete "
            "request within THUMBPROXY_HEAD_TIMEOUT), evicted (idle, to make room for a new one), refused (503: "
            "every open one busy)",
            ["reason"],
            registry=registry,
        )
        self.signature_failures = Counter(
            "thumbproxy_signature_failures",
            "Requests answered 403 for a missing or wrong sig= (THUMBPROXY_SIGNING_KEY)",
            registry=registry,
        )
