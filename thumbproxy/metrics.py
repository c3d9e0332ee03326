"""Every Prometheus metric of the service, defined once, on a registry of the app's own."""

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    """The service's metrics; one instance per application, so tests and apps never share counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.cache_requests = Counter(
            "thumbproxy_cache_requests", "Thumbnail cache lookups by level (disk, s3) and result (hit, miss, error)",
            ["level", "result"], registry=self.registry,
        )
        self.renders = Counter(
            "thumbproxy_renders", "Renders performed by kind (mono, color) and result (ok, error)",
            ["kind", "result"], registry=self.registry,
        )
        self.coalesced_requests = Counter(
            "thumbproxy_coalesced_requests", "Requests that joined identical work already under way",
            registry=self.registry,
        )
        self.s3_requests = Counter(
            "thumbproxy_s3_requests", "S3 calls by operation (get, put, head) and result (ok, miss, error)",
            ["operation", "result"], registry=self.registry,
        )
        self.color_alignments = Counter(
            "thumbproxy_color_alignments", "Colour composites by how their frames were aligned (wcs, registration, none)",
            ["method"], registry=self.registry,
        )
