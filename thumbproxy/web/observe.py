"""Around every request: an id, a JSON answer for any failure, its metrics and its access-log line."""

import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import istr

from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.throttledlog import ThrottledWarning
from thumbproxy.web.accesslog import AccessLogWriter
from thumbproxy.web.connections import Connections

log = logging.getLogger(__name__)

# Case-insensitive already: header lookups need not fold its case on every request.
REQUEST_ID_HEADER = istr("X-Request-ID")
# A client's id is echoed and logged, so only a short, plain one is taken.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "unmatched"
# A traceback a minute per kind of unexpected error: a storm of one bug must not flood the log.
UNEXPECTED_ERROR_INTERVAL = 60.0


# An answer made without awaiting anything, or None when the handler has to make it.
AnswerNow = Callable[[web.Request], web.StreamResponse | None]


class Served(NamedTuple):
    """How a handler found the thumbnail it answered with, for the access log."""

    key: str
    # "memory", "disk", "s3" or "render".
    source: str
    # Whether the request joined a lookup or render another request had started.
    coalesced: bool


SERVED_FROM = web.RequestKey("served_from", Served)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None
) -> web.Response:
    """A JSON error answer: {"message"}, and {"errors": {field: [messages]}} when a field was refused."""
    body: dict[str, object] = {"message": message}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers)


class Observation:
    """What every answer goes through: its request id, a JSON answer for any failure, CORS, and its record.

    Applied by wrapping each route's handler rather than as an aiohttp middleware: a middleware
    adds two coroutine layers to every request, a noticeable share of a cache hit's cost.
    Every answer is counted in metrics and, when access logging is on, written to access_log.
    Every answer carries Access-Control-Allow-Origin: cors_origin (none if empty), so pages and
    dashboards on other origins may use the images; errors carry error_cache_control and vary
    with the caller, whose credentials may be what made them errors. While the server drains
    (`connections.draining`), every answer closes its connection.
    """

    def __init__(
        self,
        metrics: Metrics,
        access_log: AccessLogWriter | None,
        cors_origin: str,
        error_cache_control: str,
        connections: Connections,
    ) -> None:
        self._requests = metrics.requests
        self._connections = connections
        self._access_log = access_log
        self._cors_origin = cors_origin
        self._error_cache_control = error_cache_control
        # By kind of error: one traceback a minute each, however many requests fail alike.
        self._unexpected: dict[str, ThrottledWarning] = {}
        # Ids unique across processes and replicas without a random-number syscall per request.
        self._process_id = os.urandom(8).hex()
        self._numbers = itertools.count()

    def _answer_for(self, request: web.Request, error: Exception) -> web.Response:
        """The JSON answer to a request whose handler raised `error`; 500 for what no handler meant to raise."""
        if isinstance(error, ThumbproxyError):
            return error_response(error.status, error.message, error.headers, error.errors)
        if isinstance(error, web.HTTPException) and error.status >= 400:
            message = "Not found" if error.status == 404 else error.reason
            return error_response(error.status, message, {k: v for k, v in error.headers.items() if k == "Allow"})
        kind = type(error).__name__
        throttled = self._unexpected.setdefault(
            kind, ThrottledWarning(log, UNEXPECTED_ERROR_INTERVAL, level=logging.ERROR)
        )
        throttled.warn("unexpected error answering %s %s", request.method, request.path, exc_info=error)
        return error_response(500, "Internal error")

    def wrap(self, handler: Handler, route: str, answer_now: AnswerNow | None = None) -> Handler:
        """handler, observed; `route` is its template (never the path: label values must stay few).

        `answer_now`, if given, is asked first: its answer, if not None, is the response, and the
        handler is not called.
        """
        cors_origin, error_cache_control, answer_for = self._cors_origin, self._error_cache_control, self._answer_for
        process_id, numbers, connections = self._process_id, self._numbers, self._connections
        # Looked up once here, not on every request: a hit's own work is only a few times this.
        observe = self._requests.route(route).observe
        log_line = self._access_log.add if self._access_log is not None else None

        async def observed(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            request_id = request.headers.get(REQUEST_ID_HEADER)
            if request_id is None or not CLIENT_REQUEST_ID.fullmatch(request_id):
                request_id = f"{process_id}{next(numbers):016x}"
            try:
                # Asked without a coroutine of its own: the cheapest answers are the most frequent.
                response = answer_now(request) if answer_now is not None else None
                if response is None:
                    response = await handler(request)
            except Exception as error:
                response = answer_for(request, error)
                response.headers[hdrs.CACHE_CONTROL] = error_cache_control
                response.headers[hdrs.VARY] = hdrs.AUTHORIZATION
            headers = response.headers
            headers[REQUEST_ID_HEADER] = request_id
            if cors_origin:
                headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cors_origin
            if connections.draining:
                response.force_close()
            status = response.status
            seconds = time.perf_counter() - started
            observe(status, seconds)
            if log_line is not None:
                served = request.get(SERVED_FROM)
                # The target as sent, still percent-encoded: decoding it would build a URL object per request.
                log_line(
                    (
                        time.time(),
                        request.method,
                        request.raw_path,
                        status,
                        seconds,
                        served.source if served is not None else "-",
                        served is not None and served.coalesced,
                        request_id,
                    )
                )
            return response

        return observed

    def add(
        self, app: web.Application, method: str, path: str, handler: Handler, answer_now: AnswerNow | None = None
    ) -> None:
        """Register an observed route (GET routes answer HEAD too), recorded under its template;
        for `answer_now` see `wrap`."""
        route = web.DynamicResource(path).canonical if "{" in path else path
        if method == hdrs.METH_GET:
            app.router.add_get(path, self.wrap(handler, route, answer_now))
        else:
            app.router.add_route(method, path, self.wrap(handler, route, answer_now))

    def add_unmatched(self, app: web.Application) -> None:
        """Register the route of last resort; add it after every other."""
        app.router.add_route(hdrs.METH_ANY, "/{tail:.*}", self.wrap(unmatched, UNMATCHED_ROUTE))


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route, matching everything: a 405 naming what the path allows, else a 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
