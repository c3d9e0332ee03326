"""Around every request: an id, a JSON answer for any failure, its metrics and its access-log line."""

import itertools
import logging
import os
import re
import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from thumbproxy.errors import ThumbproxyError
from thumbproxy.metrics import Metrics
from thumbproxy.thumbnails import Thumbnail
from thumbproxy.web.accesslog import AccessEntry, AccessLogWriter

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed and logged, so only a short, plain one is taken.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "unmatched"


class Observer:
    """What the middleware records into: the metrics and, when access logging is on, the writer."""

    def __init__(self, metrics: Metrics, access_log: AccessLogWriter | None) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def record(self, request: web.Request, status: int, seconds: float, request_id: str) -> None:
        """Count and time the answer, and queue its access-log line."""
        # The route template, never the path: label values must stay few.
        resource = request.match_info.route.resource
        self.metrics.requests.observe(resource.canonical if resource is not None else UNMATCHED_ROUTE, status, seconds)
        if self.access_log is not None:
            served = request.get(SERVED_FROM)
            # The path as sent, still percent-encoded: decoding it would build a URL object per request.
            path = request.raw_path.partition("?")[0]
            self.access_log.add(AccessEntry(
                time.time(), request.method, path, status, seconds,
                served.source if served is not None else "-", served is not None and served.coalesced, request_id,
            ))


# Set by a handler to the Thumbnail it answered with, for the access log.
SERVED_FROM = web.RequestKey("served_from", Thumbnail)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer."""
    return web.json_response({"message": message}, status=status, headers=headers)


def _answer_for(request: web.Request, error: Exception) -> web.Response:
    if isinstance(error, ThumbproxyError):
        return error_response(error.status, error.message, error.headers)
    if isinstance(error, web.HTTPException) and error.status >= 400:
        message = "Not found" if error.status == 404 else error.reason
        return error_response(error.status, message, {k: v for k, v in error.headers.items() if k == "Allow"})
    log.error("unexpected error answering %s %s", request.method, request.path, exc_info=error)
    return error_response(500, "Internal error")


def observing(observer: Observer, cors_origin: str, error_cache_control: str) -> Middleware:
    """The middleware that answers every request, tags it with its id and records it in observer.

    Every answer carries Access-Control-Allow-Origin: cors_origin (none if empty), so pages and
    dashboards on other origins may use the images; errors carry error_cache_control and vary
    with the caller, whose credentials may be what made them errors.
    """
    # Ids unique across processes and replicas without a random-number syscall per request.
    process_id = os.urandom(8).hex()
    numbers = itertools.count()

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is None or not CLIENT_REQUEST_ID.fullmatch(request_id):
            request_id = f"{process_id}{next(numbers):016x}"
        try:
            response = await handler(request)
        except Exception as error:
            response = _answer_for(request, error)
            response.headers[hdrs.CACHE_CONTROL] = error_cache_control
            response.headers[hdrs.VARY] = hdrs.AUTHORIZATION
        headers = response.headers
        headers[REQUEST_ID_HEADER] = request_id
        if cors_origin:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cors_origin
        observer.record(request, response.status, time.perf_counter() - started, request_id)
        return response

    return observe
