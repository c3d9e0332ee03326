"""Every Prometheus metric of the service, defined once, on a registry of the app's own.

Label values stay bounded: routes are route templates, never a frame id, basename, label text
or URL.
"""

from prometheus_client import (CollectorRegistry, Counter, Gauge, GCCollector, Histogram, Info, PlatformCollector,
                               ProcessCollector)

from thumbproxy import __version__

# From a 1 ms memory hit to a 10 s render of a large frame on a busy pool.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ARCHIVE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The service's metrics; one instance per application, so tests and apps never share counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("thumbproxy_build", "Version of the running service", registry=registry).info(
            {"version": __version__}
        )
        self.requests = Counter(
            "thumbproxy_requests", "Answered HTTP requests by route template and status",
            ["route", "status"], registry=registry,
        )
        self.request_duration = Histogram(
            "thumbproxy_request_duration_seconds", "Time to answer a request, by route template",
            ["route"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.cache_requests = Counter(
            "thumbproxy_cache_requests", "Thumbnail cache lookups by level (memory, disk, s3) and result (hit, miss, error)",
            ["level", "result"], registry=registry,
        )
        self.renders = Counter(
            "thumbproxy_renders", "Renders performed by kind (mono, color) and result (ok, error)",
            ["kind", "result"], registry=registry,
        )
        self.render_duration = Histogram(
            "thumbproxy_render_duration_seconds", "Time from handing a render to the pool to its result, by kind",
            ["kind"], buckets=RENDER_BUCKETS, registry=registry,
        )
        self.renders_in_progress = Gauge(
            "thumbproxy_renders_in_progress", "Renders running in a pool worker now", registry=registry,
        )
        self.render_queue_depth = Gauge(
            "thumbproxy_render_queue_depth", "Renders waiting for a free pool worker", registry=registry,
        )
        self.coalesced_requests = Counter(
            "thumbproxy_coalesced_requests", "Requests that joined identical work already under way",
            registry=registry,
        )
        self.color_alignments = Counter(
            "thumbproxy_color_alignments", "Colour composites by how their frames were aligned (wcs, registration, none)",
            ["method"], registry=registry,
        )
        self.archive_requests = Counter(
            "thumbproxy_archive_requests", "Archive calls by operation (frame, list, download) and status "
            "(the HTTP status, or timeout, error)",
            ["operation", "status"], registry=registry,
        )
        self.archive_request_duration = Histogram(
            "thumbproxy_archive_request_duration_seconds", "Time of archive calls by operation",
            ["operation"], buckets=ARCHIVE_BUCKETS, registry=registry,
        )
        self.download_bytes = Counter(
            "thumbproxy_download_bytes", "Bytes of FITS files downloaded from the archive", registry=registry,
        )
        self.s3_requests = Counter(
            "thumbproxy_s3_requests", "S3 calls by operation (get, put, head) and result (ok, miss, error)",
            ["operation", "result"], registry=registry,
        )
